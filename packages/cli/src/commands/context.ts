/** What every command module shares: the I/O, the run's state, and the shape of a command. */
import type { Argv } from "yargs";
import type { CommitOptions, Guest, OpenGuestOptions } from "../image/open-guest.js";

export interface CliIo {
  out(text: string): void;
  /** Raw bytes to stdout (`cat` of a binary file); without it they go through `out` as UTF-8. */
  outBytes?(data: Uint8Array): void;
  err(text: string): void;
  /** stderr is a terminal (progress lines allowed). */
  isTTY?: boolean;
  env?: Record<string, string | undefined>;
}

export const processIo: CliIo = {
  out: (t) => process.stdout.write(t),
  outBytes: (b) => process.stdout.write(b),
  err: (t) => process.stderr.write(t),
  isTTY: process.stderr.isTTY === true,
  env: process.env,
};

export interface Common {
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  debug: boolean;
  "dry-run": boolean;
}

/** The parsed arguments of a command (yargs' object: option names as given, positionals). */
export type Args = Record<string, unknown>;

/** The state of one runCli call, handed to the command that runs. */
export interface CommandContext {
  readonly io: CliIo;
  readonly env: Record<string, string | undefined>;
  readonly argv: readonly string[];
  /** The image the error line names (each command sets it as soon as it knows it). */
  image: string | undefined;
  /** Exit code of a command that returns normally (check's 5, an unsafe image's 3). */
  code: number;
  /** Draw a progress bar while withGuest writes the output (a terminal and -o). */
  progressOn: boolean;
  /** A line of text output (not with --quiet or --json). */
  say(a: Common, text: string): void;
  emitJson(obj: unknown): void;
  /** A transient status line on a terminal's stderr. */
  progress(a: Common, text: string): void;
  progressDone(a: Common): void;
  ttyProgress(a: Common): boolean;
  /** Opens the guest, runs `f`, commits (writing any output; `commit` adds hooks) and closes. */
  withGuest<T>(
    path: string,
    opts: OpenGuestOptions,
    f: (g: Guest) => Promise<T>,
    commit?: Omit<CommitOptions, "onProgress">,
  ): Promise<T>;
}

/** One `imgpatch` command: its yargs declaration and its handler. */
export interface CommandSpec {
  command: string;
  describe: string;
  builder: (y: Argv) => Argv;
  run: (a: Args, ctx: CommandContext) => Promise<void>;
}
