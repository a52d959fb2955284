export { type CopyOutResult, copyOut, HostPathExistsError } from "./copy-out.js";
export { type DiffEntry, type DiffKind, diffGuests } from "./diff.js";
export { globComponentToRegExp, guestGlob, hasGlobChars } from "./glob.js";
export {
  applyOperation,
  type CustomizeContext,
  type CustomizeOp,
  type CustomizeOpName,
  CustomizeUsageError,
  describeOperation,
  parseCommandsFile,
  parseOperation,
} from "./operations.js";
export { type TarInResult, tarIn } from "./tar-in.js";
export { type CopyInOptions, copyIn, copyTree, removeTree } from "./tree-ops.js";
export { modeString, type WalkEntry, walkGuest } from "./walk.js";
