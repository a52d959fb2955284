/**
 * The `imgpatch` command line as a library: `runCli` (commands/cli.ts) and what tests and the
 * main-job helpers share.
 */
export { COMMANDS, type CommandEntry, runCli } from "./cli.js";
export { type CliIo, processIo } from "./context.js";
export { parseSize, sourceDateEpoch } from "./options.js";
export { runSteps, type StepContext } from "./steps.js";
