/**
 * The `imgpatch` command line: a thin yargs layer over the library. `runCli(argv, io)` returns the
 * exit code instead of exiting, so tests can call it in-process; src/bin/imgpatch.ts wires it to the
 * process. Each command lives in its own module (a CommandSpec), imported only when yargs selects
 * it (or its help is asked for): a run loads the code of one command, not of all of them. This file
 * holds the global options, the command table, the run's shared state and the error report, and
 * imports nothing heavy itself (the guest opener and the error classes are loaded when used).
 */
import { createRequire } from "node:module";
import { basename } from "node:path";
import yargs, { type Argv } from "yargs";
import type { CommitOptions, Guest, OpenGuestOptions } from "../image/open-guest.js";
import type { CliIo, CommandContext, CommandSpec, Common } from "./context.js";
import { processIo } from "./context.js";
import { withProgressBar } from "./progress.js";

/** A command as `imgpatch --help` lists it; its module is imported by `load` when it runs. */
export interface CommandEntry {
  command: string;
  describe: string;
  load: () => Promise<CommandSpec>;
}

/** This package's version (its package.json is two levels up from both src/ and dist/). */
const VERSION = (createRequire(import.meta.url)("../../package.json") as { version: string }).version;

/**
 * In the order `imgpatch --help` lists them. `command` and `describe` repeat each module's own
 * (test/command-table.test.ts checks they agree).
 */
export const COMMANDS: readonly CommandEntry[] = [
  {
    command: "info <image>",
    describe: "format, backing chain, partitions, filesystems, mounts and OS",
    load: async () => (await import("./info.js")).infoCommand,
  },
  {
    command: "ls <image> [path]",
    describe: "list a guest directory",
    load: async () => (await import("./ls.js")).lsCommand,
  },
  {
    command: "cat <image> <path>",
    describe: "print a guest file",
    load: async () => (await import("./cat.js")).catCommand,
  },
  {
    command: "stat <image> <path>",
    describe: "metadata of a guest path (not following a final symlink)",
    load: async () => (await import("./stat.js")).statCommand,
  },
  {
    command: "get <image> <guest> <host>",
    describe:
      "copy a guest file or tree out (never follows guest symlinks onto host paths; never overwrites)",
    load: async () => (await import("./get.js")).getCommand,
  },
  {
    command: "diff <a> <b>",
    describe: "guest files that differ between two images (content compared byte for byte)",
    load: async () => (await import("./diff.js")).diffCommand,
  },
  {
    command: "rollback <image>",
    describe: "restore IMAGE from the undo file an interrupted --in-place run left (IMAGE.imgpatch-undo)",
    load: async () => (await import("./rollback.js")).rollbackCommand,
  },
  {
    command: "check <image>",
    describe: "qcow2 metadata, ext4 and XFS consistency (e2fsck -fn, xfs_repair -n when installed)",
    load: async () => (await import("./check-command.js")).checkCommand,
  },
  {
    command: "create <file> [size]",
    describe: "create an empty image (qemu-img create)",
    load: async () => (await import("./create.js")).createCommand,
  },
  {
    command: "convert <src> <dst>",
    describe: "copy an image to a new format (qemu-img convert)",
    load: async () => (await import("./convert.js")).convertCommand,
  },
  {
    command: "sparsify <src> [dst]",
    describe:
      "copy only the blocks the filesystems use (free space left unallocated), or discard it --in-place",
    load: async () => (await import("./sparsify.js")).sparsifyCommand,
  },
  {
    command: "overlay <base> <out>",
    describe: "create a qcow2 overlay whose backing file is BASE",
    load: async () => (await import("./overlay.js")).overlayCommand,
  },
  {
    command: "customize [image]",
    describe: "apply virt-customize-style operations in command-line order",
    load: async () => (await import("./customize.js")).customizeCommand,
  },
  {
    command: "elements <image> [elements..]",
    describe:
      "bake diskimage-builder elements into the image (no chroot; install phases deferred to first boot)",
    load: async () => (await import("./elements.js")).elementsCommand,
  },
  {
    command: "sysprep [image]",
    describe: "virt-sysprep's operations: remove machine-id, host keys, logs, leases... (43 operations)",
    load: async () => (await import("./sysprep.js")).sysprepCommand,
  },
];

/** yargs' failure (bad command line), made a UsageError where it is reported. */
class CommandLineError extends Error {}

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
    code: 0, // EXIT.ok
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
      const { openGuest } = await import("../image/open-guest.js");
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
      throw new CommandLineError(msg);
    });
  for (const c of COMMANDS)
    parser = parser.command(
      c.command,
      c.describe,
      async (y) => (await c.load()).builder(y),
      async (a) => (await c.load()).run(a, ctx),
    );

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
    if (helpShown) return 0; // EXIT.ok
    return ctx.code;
  } catch (caught) {
    const [{ EXIT, errorLine, exitCodeOf }, { UsageError }] = await Promise.all([
      import("./errors.js"),
      import("../image/open-image.js"),
    ]);
    const err = caught instanceof CommandLineError ? new UsageError(caught.message) : caught;
    const c = exitCodeOf(err);
    io.err(`${errorLine(err, ctx.image)}\n`);
    if (c === EXIT.usage && !ctx.image && !(err instanceof UsageError && err.file))
      io.err("imgpatch: see imgpatch --help\n");
    if (debug && err instanceof Error && err.stack) io.err(`${err.stack}\n`);
    return c;
  }
}
