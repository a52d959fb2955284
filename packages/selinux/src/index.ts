export { SelinuxPolicyError, SelinuxRegexError } from "./errors.js";
export { FCONTEXT_BIN_MAGIC, isFcontextBin, parseFcontextBin } from "./fcontext-bin.js";
export {
  type FileContextSpec,
  fileTypeFlag,
  parseFileContexts,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
} from "./file-contexts.js";
export { expandHomedirTemplate, findConfigValue, type HomedirInputs, homeRoots } from "./homedirs.js";
export { LazySpecText } from "./lazy-specs.js";
export {
  cleanKey,
  FileContexts,
  type FileContextsSources,
  firstComponentBucket,
  type LabelMatch,
} from "./match.js";
export {
  contextFromXattr,
  contextXattr,
  type GuestPolicy,
  HOMEDIR_INPUTS,
  loadGuestPolicy,
  loadSpecFile,
  type PolicyReader,
  parseSelinuxConfig,
  SELINUX_CONFIG,
  SELINUX_XATTR,
  type SelinuxConfig,
  type SelinuxMode,
} from "./policy.js";
export {
  analyzeSpec,
  compileSpecRegex,
  pathKey,
  specLiteral,
  specMeta,
  specPrefix,
  specStem,
} from "./regex.js";
export {
  type LabelTree,
  modeOfType,
  type RelabelOptions,
  type RelabelReport,
  relabelTree,
  type TreeFileType,
} from "./relabel.js";
export { applySub, type PathSub, parseSubs, substitutePath } from "./subs.js";
