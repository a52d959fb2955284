export {
  type ApplyOptions,
  type ApplyResult,
  applyElementsPlan,
  type BakeElementsOptions,
  bakeElements,
  renderElementsPlan,
} from "./apply.js";
export { type ElementClosure, expandElements } from "./closure.js";
export { type ElementInfo, findAllElements, parseElementsPath } from "./elements-path.js";
export {
  AlreadyProvidedError,
  DuplicateHookError,
  ElementError,
  ElementFormatError,
  InvalidElementsPathError,
  MissingElementError,
} from "./errors.js";
export {
  HEAT_HOOKS_DIR,
  OAC_TEMPLATES,
  OCC_CONF,
  OCC_UNIT,
  ORC_BASE,
  ORC_PHASES,
  occBootstrapConf,
  occFirstbootDropIn,
  occUnitText,
} from "./known-elements.js";
export {
  type HookCollision,
  type MergedEntry,
  type MergedHooks,
  type MergeOptions,
  mergeElements,
} from "./merge.js";
export { type GuestOp, isVolatilePath, type OpSource, renderOp } from "./ops.js";
export {
  collectPackageInstalls,
  distroFromOsRelease,
  evaluateWhen,
  type GuestDistro,
  PACKAGE_PHASES,
  type PackagePhase,
  type PackageRequest,
} from "./package-installs.js";
export {
  ELEMENTS_HOOKS,
  ELEMENTS_RUNNER,
  ELEMENTS_STAMP,
  elementsPayloadScript,
  elementsQueueScript,
} from "./payload.js";
export {
  BUILD_HOST_PHASES,
  buildElementsPlan,
  type DeferredScript,
  defaultPythonVersion,
  type ElementsPlan,
  type ElementsPlanOptions,
  type ElementsReport,
  WHEELHOUSE,
} from "./plan.js";
export { finishRpmAgents, type RpmAgentsResult } from "./rpm-route.js";
export { compareSortN, selectEnvironmentFiles, selectScripts } from "./run-parts.js";
export { parseYaml, type YamlValue } from "./yaml.js";
