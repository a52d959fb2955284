/**
 * The `imgpatch` command: a thin yargs layer over the library. `runCli(argv, io)` returns the exit
 * code instead of exiting, so tests can call it in-process; src/bin/imgpatch.ts wires it to the process.
 * Each command lives in its own module (a CommandSpec); this file holds the global options, the
 * run's shared state and the error report.
 */
import { createRequire } from "node:module";
import { basename } from "node:path";
import yargs, { type Argv } from "yargs";
import type { CommitOptions, Guest, OpenGuestOptions } from "../image/open-guest.js";
import { openGuest } from "../image/open-guest.js";
import { UsageError } from "../image/open-image.js";
import { catCommand } from "./cat.js";
import { checkCommand } from "./check-command.js";
import { type CliIo, type CommandContext, type CommandSpec, type Common, processIo } from "./context.js";
import { convertCommand } from "./convert.js";
import { createCommand } from "./create.js";
import { customizeCommand } from "./customize.js";
import { diffCommand } from "./diff.js";
import { elementsCommand } from "./elements.js";
import { EXIT, errorLine, exitCodeOf } from "./errors.js";
import { getCommand } from "./get.js";
import { infoCommand } from "./info.js";
import { lsCommand } from "./ls.js";
import { overlayCommand } from "./overlay.js";
import { withProgressBar } from "./progress.js";
import { rollbackCommand } from "./rollback.js";
import { sparsifyCommand } from "./sparsify.js";
import { statCommand } from "./stat.js";
import { sysprepCommand } from "./sysprep.js";

export { type CliIo, processIo } from "./context.js";
export { parseSize, sourceDateEpoch } from "./options.js";
export { runSteps, type StepContext } from "./steps.js";

/** This package's version (its package.json is two levels up from both src/ and dist/). */
const VERSION = (createRequire(import.meta.url)("../../package.json") as { version: string }).version;

/** In the order `imgpatch --help` lists them. */
const COMMANDS: readonly CommandSpec[] = [
  infoCommand,
  lsCommand,
  catCommand,
  statCommand,
  getCommand,
  diffCommand,
  rollbackCommand,
  checkCommand,
  createCommand,
  convertCommand,
  sparsifyCommand,
  overlayCommand,
  customizeCommand,
  elementsCommand,
  sysprepCommand,
];

/**
 * yargs lays out the whole help text after every command handler starts (cached in case the
 * handler fails later and the help must be printed): ~40 ms of text measuring on each run. Our
 * `.fail()` never prints help (it says "see imgpatch --help"), so that cache is never read; turn
 * it off when this yargs exposes it (help itself is still laid out on demand).
 */
function skipHelpLayoutAfterHandlers(parser: Argv): void {
  type Usage = { cacheHelpMessage?: () => void };
  const internals = (parser as unknown as { getInternalMethods?: () => { getUsageInstance?: () => Usage } })
    .getInternalMethods;
  const usage = typeof internals === "function" ? internals.call(parser).getUsageInstance?.() : undefined;
  if (usage && typeof usage.cacheHelpMessage === "function") usage.cacheHelpMessage = () => {};
}

/** Runs the CLI; resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  let debug = argv.includes("--debug");
  const env = io.env ?? process.env;
  const ctx: CommandContext = {
    io,
    env,
    argv,
    image: undefined,
    code: EXIT.ok,
    progressOn: false,
    say(a: Common, text: string) {
      if (!a.quiet && !a.json) io.out(text.endsWith("\n") ? text : `${text}\n`);
    },
    emitJson: (obj: unknown) => io.out(`${JSON.stringify(obj, null, 2)}\n`),
    progress(a: Common, text: string) {
      if (io.isTTY && !a.quiet && !a.json) io.err(`\r${text}\x1b[K`);
    },
    progressDone(a: Common) {
      if (io.isTTY && !a.quiet && !a.json) io.err("\r\x1b[K");
    },
    ttyProgress: (a: Common) => io.isTTY === true && !a.quiet && !a.json,
    async withGuest<T>(
      path: string,
      opts: OpenGuestOptions,
      f: (g: Guest) => Promise<T>,
      commit?: Omit<CommitOptions, "onProgress">,
    ): Promise<T> {
      ctx.image = path;
      const g = await openGuest(path, opts);
      try {
        const r = await f(g);
        await withProgressBar(ctx.progressOn, `writing ${basename(g.target ?? path)}`, io.err, (onProgress) =>
          g.commit({ ...commit, onProgress }),
        );
        return r;
      } finally {
        await g.close();
      }
    },
  };

  let parser: Argv = yargs([...argv])
    .scriptName("imgpatch")
    .usage(
      "$0 <command> [options]\n\nEdit qcow2/raw disk images (ext4 guests) without a VM, root or loop devices.",
    )
    .option("json", {
      type: "boolean",
      default: false,
      describe: "machine-readable output (documented in the README)",
    })
    .option("verbose", { alias: "v", type: "boolean", default: false })
    .option("quiet", { alias: "q", type: "boolean", default: false })
    .option("debug", { type: "boolean", default: false, describe: "show stack traces" })
    .option("allow-backing", {
      type: "string",
      describe:
        "also follow backing files / data files that lead into DIR (repeatable; default: only the image's own directory; also IMGPATCH_ALLOW_BACKING=DIR:DIR)",
    })
    .option("dry-run", {
      alias: "n",
      type: "boolean",
      default: false,
      describe: "print the plan, change nothing",
    })
    .demandCommand(1, "give a command (imgpatch --help lists them)")
    .strict()
    .help()
    .version(VERSION)
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      throw new UsageError(msg);
    });
  for (const c of COMMANDS) parser = parser.command(c.command, c.describe, c.builder, (a) => c.run(a, ctx));

  skipHelpLayoutAfterHandlers(parser);
  let helpShown = false;
  try {
    const parsed = await parser.parseAsync([...argv], {}, (err, _args, output) => {
      if (output && !err) {
        helpShown = true;
        io.out(`${output}\n`);
      }
    });
    debug = (parsed as { debug?: boolean }).debug === true || debug;
    if (helpShown) return EXIT.ok;
    return ctx.code;
  } catch (err) {
    const c = exitCodeOf(err);
    io.err(`${errorLine(err, ctx.image)}\n`);
    if (c === EXIT.usage && !ctx.image && !(err instanceof UsageError && err.file))
      io.err("imgpatch: see imgpatch --help\n");
    if (debug && err instanceof Error && err.stack) io.err(`${err.stack}\n`);
    return c;
  }
}
