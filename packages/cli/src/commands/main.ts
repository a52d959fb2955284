/**
 * The `imgpatch` command: a thin yargs layer over the library. `runCli(argv, io)` returns the exit
 * code instead of exiting, so tests can call it in-process; src/bin/imgpatch.ts wires it to the process.
 */
import { writeFile as hostWriteFile, rename, rm, truncate } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { inspectDisk, readUndoHeader, undoPathFor } from "@imgpatch/disk";
import { convertImage, createQcow2, qcow2Info } from "@imgpatch/qcow2";
import yargs, { type Argv } from "yargs";
import type { DebStepOptions } from "../customize/install-deb.js";
import { applyOperation, type CustomizeContext, describeOperation } from "../customize/operations.js";
import { modeString, walkGuest } from "../customize/walk.js";
import type { GuestStats } from "../guest/guest-fs.js";
import { type Guest, type OpenGuestOptions, openGuest, rollbackInPlace } from "../image/open-guest.js";
import { type DiskFormat, openImage, UsageError } from "../image/open-image.js";
import { EXIT, errorLine, exitCodeOf } from "./errors.js";
import { formatBytes, progressBar, type StepProgress, withProgressBar } from "./progress.js";
import {
  NO_ARG_OPS,
  OPERATION_HELP,
  OPERATION_NAMES,
  orderedSteps,
  type RpmStep,
  type Step,
} from "./recipe.js";

/** This package's version (its package.json is two levels up from both src/ and dist/). */
const VERSION = (createRequire(import.meta.url)("../../package.json") as { version: string }).version;

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

interface Common {
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  debug: boolean;
  "dry-run": boolean;
}

// Loaded on first use: most runs need neither rpm-inject, the elements engine nor xxhash (start-up time).
const rpmInject = () => import("@imgpatch/rpm-inject");
const rpmBridge = () => import("../guest/rpm-bridge.js");
const installDeb = () => import("../customize/install-deb.js");

/** SOURCE_DATE_EPOCH as a Date (seconds since the epoch), when set and valid. */
export function sourceDateEpoch(env: Record<string, string | undefined> = process.env): Date | undefined {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === "") return undefined;
  if (!/^\d{1,12}$/.test(v))
    throw new UsageError(`SOURCE_DATE_EPOCH must be a number of seconds, got "${v}"`);
  return new Date(Number(v) * 1000);
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** qemu-img sizes: 1048576, 512M, 10G, 1.5G (binary units). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`invalid size "${text}" (e.g. 10G, 512M, 1048576)`);
  const n = Math.round(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`invalid size "${text}"`);
  return n;
}

function missingSize(file: string): never {
  throw new UsageError("create needs a SIZE (or -b BACKING)", file);
}

function fmtArg(v: unknown, what: string): DiskFormat | undefined {
  if (v === undefined) return undefined;
  if (v === "qcow2" || v === "raw") return v;
  throw new UsageError(`${what}: format must be qcow2 or raw, got "${String(v)}"`);
}

function statJson(path: string, s: GuestStats) {
  return {
    path,
    type: s.type,
    mode: `0${s.mode.toString(8).padStart(3, "0")}`,
    uid: s.uid,
    gid: s.gid,
    size: s.size,
    nlink: s.nlink,
    ino: s.ino,
    mtime: s.mtime.toISOString(),
  };
}

function lsLine(name: string, s: GuestStats, target?: string): string {
  const date = s.mtime.toISOString().slice(0, 16).replace("T", " ");
  return `${modeString(s.type, s.mode)} ${String(s.nlink).padStart(3)} ${String(s.uid).padStart(5)} ${String(s.gid).padStart(5)} ${String(s.size).padStart(10)} ${date} ${name}${target !== undefined ? ` -> ${target}` : ""}`;
}

function stepLabel(step: Step): string {
  if (step.op === "install") return `install ${step.packages.join(",")}`;
  if (step.op === "deb") return `deb ${JSON.stringify({ host: step.host })}`;
  return step.op === "rpm" ? `rpm ${JSON.stringify({ host: step.host })}` : describeOperation(step);
}

/** --rpm-signature and --rpm-key: rpm-inject's signature policy (see its README). */
function rpmPolicyOf(a: {
  "rpm-signature"?: string;
  "rpm-key"?: unknown;
}): Pick<RpmStep, "signature" | "keys"> {
  const signature = a["rpm-signature"] as RpmStep["signature"];
  const keys = a["rpm-key"] === undefined ? undefined : [a["rpm-key"]].flat().map(String);
  return { signature, keys };
}

/** customize's options for --install/--deb steps; `bars` draws one progress bar per download. */
function debOptionsOf(
  a: Record<string, unknown>,
  err: (text: string) => void,
  bars: boolean,
): DebStepOptions {
  const open = new Map<string, StepProgress>();
  return {
    repos: a.repo === undefined ? undefined : [a.repo].flat().map(String),
    installRecommends: a["install-recommends"] as boolean | undefined,
    allowUnauthenticated: a["allow-unauthenticated"] === true,
    warn: (m) => err(`imgpatch: ${m}\n`),
    progress: bars
      ? (e) => {
          if (e.cached) return;
          let bar = open.get(e.url);
          if (!bar) {
            bar = progressBar(true, basename(e.url), err);
            open.set(e.url, bar);
          }
          bar.update(e.received, e.total ?? e.received);
          if (e.done) {
            bar.finish();
            open.delete(e.url);
          }
        }
      : undefined,
  };
}

/** The --dry-run text of a resolved plan: each package, version, size and why. */
function formatDebPlan(plan: unknown): string[] {
  const p = plan as {
    packages: Array<{ package: string; version: string; size: number; reason: string }>;
    repositories: Array<{ uri: string; suite: string; trust: string }>;
  };
  return [
    ...p.repositories.map((r) => `repository ${r.uri} ${r.suite}: ${r.trust}`),
    ...p.packages.map(
      (x) => `install ${x.package} ${x.version} (${(x.size / 1024).toFixed(0)} KiB): ${x.reason}`,
    ),
    `${p.packages.length} packages, ${(p.packages.reduce((n, x) => n + x.size, 0) / 1048576).toFixed(1)} MiB to download`,
  ];
}

/** The policy applies to every --rpm step. */
function withRpmPolicy(steps: Step[], a: { "rpm-signature"?: string; "rpm-key"?: unknown }): Step[] {
  const { signature, keys } = rpmPolicyOf(a);
  if (signature === undefined && keys === undefined) return steps;
  return steps.map((s) => (s.op === "rpm" ? { ...s, signature, keys } : s));
}

/** Runs `customize` steps on an open guest; returns per-step change lines. */
export interface StepContext extends CustomizeContext {
  /** --rpm-owner-fallback: owners missing from the guest → root now, chowned at first boot after %pre. */
  rpmMissingOwner?: "error" | "root";
  /** --repo, --no-install-recommends, --allow-unauthenticated for --install/--deb. */
  deb?: DebStepOptions;
}

export async function runSteps(
  guest: Guest,
  steps: readonly Step[],
  ctx: StepContext,
  onStep?: (step: Step, lines: string[]) => void,
): Promise<Array<{ step: Step; changes: string[] }>> {
  const done: Array<{ step: Step; changes: string[] }> = [];
  for (const step of steps) {
    let lines: string[];
    if (step.op === "rpm") {
      const { injectRpms, readRpm } = await rpmInject();
      const { injectTargetFromGuestFs, queueFirstbootPlan } = await rpmBridge();
      const pkg = await readRpm(step.host);
      try {
        const r = await injectRpms([pkg], injectTargetFromGuestFs(guest.fs, guest.image), {
          missingOwner: ctx.rpmMissingOwner ?? "error",
          signature: step.signature,
          keys: step.keys,
        });
        lines = r.reports.flatMap((rep) => [
          `installed ${rep.nevra}: ${rep.written.length} files`,
          ...rep.warnings,
        ]);
        lines.push(...(await queueFirstbootPlan(guest.fs, r.firstboot)).map((p) => `firstboot ${p}`));
      } finally {
        await pkg.close();
      }
    } else if (step.op === "install" || step.op === "deb") {
      const { runDebStep } = await installDeb();
      lines = await runDebStep(guest.fs, guest.image, step, ctx.deb ?? {});
    } else {
      lines = await applyOperation(guest.fs, step, ctx);
    }
    onStep?.(step, lines);
    done.push({ step, changes: lines });
  }
  return done;
}

function mountsArg(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  return (Array.isArray(v) ? v : [v]).map(String);
}

function outputOptions(a: Record<string, unknown>): OpenGuestOptions {
  return {
    format: fmtArg(a.format, "--format"),
    mounts: mountsArg(a.mount),
    overlay: a.overlay as string | undefined,
    output: a.output as string | undefined,
    outputFormat: fmtArg(a["output-format"], "--output-format"),
    compress: a.compress === true,
    inPlace: a["in-place"] === true,
  };
}

/** The open options every reading command takes: `--format` and repeatable `-m DEV:MOUNTPOINT`. */
function readOpenOptions(a: Record<string, unknown>): { format?: DiskFormat; mounts?: string[] } {
  return { format: fmtArg(a.format, "--format"), mounts: mountsArg(a.mount) };
}

function imageOptions(y: Argv): Argv {
  return y
    .option("format", { type: "string", describe: "input format (qcow2|raw); detected when absent" })
    .option("mount", {
      alias: "m",
      type: "string",
      describe: "DEV:MOUNTPOINT (repeatable) (3:/, /dev/sda3:/, UUID=…:/boot); replaces fstab",
    });
}

function outputModeOptions(y: Argv): Argv {
  return y
    .option("overlay", { type: "string", describe: "write a qcow2 overlay backed by IMAGE" })
    .option("output", { alias: "o", type: "string", describe: "write a full new image" })
    .option("output-format", { type: "string", describe: "format of -o (qcow2|raw; default from the name)" })
    .option("compress", { alias: "c", type: "boolean", describe: "compress -o (qcow2)" })
    .option("in-place", { type: "boolean", describe: "modify IMAGE itself" });
}

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
  let code: number = EXIT.ok;
  let image: string | undefined;
  let debug = argv.includes("--debug");
  const env = io.env ?? process.env;
  const say = (a: Common, text: string) => {
    if (!a.quiet && !a.json) io.out(text.endsWith("\n") ? text : `${text}\n`);
  };
  const emitJson = (obj: unknown) => io.out(`${JSON.stringify(obj, null, 2)}\n`);
  const progress = (a: Common, text: string) => {
    if (io.isTTY && !a.quiet && !a.json) io.err(`\r${text}\x1b[K`);
  };
  const progressDone = (a: Common) => {
    if (io.isTTY && !a.quiet && !a.json) io.err("\r\x1b[K");
  };
  const ttyProgress = (a: Common) => io.isTTY === true && !a.quiet && !a.json;
  let progressOn = false;

  const withGuest = async <T>(
    path: string,
    opts: OpenGuestOptions,
    f: (g: Guest) => Promise<T>,
  ): Promise<T> => {
    image = path;
    const g = await openGuest(path, opts);
    try {
      const r = await f(g);
      await withProgressBar(progressOn, `writing ${basename(g.target ?? path)}`, io.err, (onProgress) =>
        g.commit({ onProgress }),
      );
      return r;
    } finally {
      await g.close();
    }
  };

  const parser = yargs([...argv])
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
    .option("dry-run", {
      alias: "n",
      type: "boolean",
      default: false,
      describe: "print the plan, change nothing",
    })
    .command(
      "info <image>",
      "format, backing chain, partitions, filesystems, mounts and OS",
      (y) => imageOptions(y.positional("image", { type: "string", demandOption: true })),
      async (a) => {
        const path = a.image as string;
        image = path;
        const chain = await qcow2Info(path, { backingChain: true }).catch(() => undefined);
        const { device, format } = await openImage(path, { format: fmtArg(a.format, "--format") });
        let disk: Awaited<ReturnType<typeof inspectDisk>>;
        const virtualSize = device.size;
        try {
          disk = await inspectDisk(device);
        } finally {
          await device.close();
        }
        let guest: { mounts: Guest["mounts"]; os: Guest["os"]; warnings: string[] } | { error: string };
        try {
          guest = await withGuest(path, readOpenOptions(a), async (g) => ({
            mounts: g.mounts,
            os: g.os,
            warnings: g.warnings,
          }));
        } catch (err) {
          guest = { error: (err as Error).message };
        }
        const doc = {
          image: path,
          format,
          virtualSize: chain?.[0]?.virtualSize ?? virtualSize,
          backingChain: (chain ?? []).slice(1).map((c) => ({ filename: c.filename, format: c.format })),
          partitionTable: disk.table ? disk.table.type : null,
          volumes: disk.volumes.map((v) => ({
            partition: v.partition
              ? {
                  number: v.partition.number,
                  start: v.partition.start,
                  size: v.partition.size,
                  type: v.partition.type,
                  typeName: v.partition.typeName ?? null,
                  name: v.partition.name,
                  uuid: v.partition.uuid,
                }
              : null,
            filesystem: v.filesystem
              ? {
                  type: v.filesystem.type,
                  label: v.filesystem.label ?? null,
                  uuid: v.filesystem.uuid ?? null,
                }
              : null,
          })),
          guest,
        };
        if (a.json) return emitJson(doc);
        const lines = [`image: ${path}`, `format: ${format}`];
        if (doc.virtualSize !== undefined)
          lines.push(`virtual size: ${formatBytes(doc.virtualSize)} (${doc.virtualSize} bytes)`);
        for (const b of doc.backingChain) lines.push(`backing: ${b.filename} (${b.format})`);
        lines.push(`partition table: ${doc.partitionTable ?? "none"}`);
        for (const v of doc.volumes) {
          const where = v.partition
            ? `partition ${v.partition.number} (${v.partition.typeName ?? v.partition.type})`
            : "whole disk";
          const fs = v.filesystem
            ? `${v.filesystem.type}${v.filesystem.label ? ` "${v.filesystem.label}"` : ""}${v.filesystem.uuid ? ` UUID=${v.filesystem.uuid}` : ""}`
            : "unrecognised";
          lines.push(`  ${where}: ${fs}`);
        }
        if ("error" in guest) lines.push(`guest: ${guest.error}`);
        else {
          for (const m of guest.mounts)
            lines.push(`mount: ${m.mountpoint} <- ${m.source}${m.reason ? ` [${m.reason}]` : ""}`);
          if (guest.os.PRETTY_NAME ?? guest.os.NAME)
            lines.push(`os: ${guest.os.PRETTY_NAME ?? guest.os.NAME}`);
          for (const w of guest.warnings) lines.push(`warning: ${w}`);
        }
        say(a as unknown as Common, lines.join("\n"));
      },
    )
    .command(
      "ls <image> [path]",
      "list a guest directory",
      (y) =>
        imageOptions(y)
          .positional("image", { type: "string", demandOption: true })
          .positional("path", { type: "string", default: "/" })
          .option("l", { type: "boolean", default: false, describe: "long listing" })
          .option("R", { type: "boolean", default: false, describe: "recursive" }),
      async (a) => {
        await withGuest(a.image as string, readOpenOptions(a), async (g) => {
          const root = a.path as string;
          const entries: Array<{ path: string; stats: GuestStats; target?: string }> = [];
          const rootStat = await g.fs.stat(root);
          if (a.R) {
            for await (const e of walkGuest(g.fs, root)) entries.push({ ...e });
          } else if (rootStat.type === "directory") {
            for (const n of await g.fs.readdir(root)) {
              const p = `${root === "/" ? "" : root.replace(/\/+$/, "")}/${n}`;
              entries.push({ path: p, stats: await g.fs.lstat(p) });
            }
          } else entries.push({ path: root, stats: await g.fs.lstat(root) });
          for (const e of entries) if (e.stats.type === "symlink") e.target = await g.fs.readlink(e.path);
          if (a.json)
            return emitJson(entries.map((e) => ({ ...statJson(e.path, e.stats), target: e.target ?? null })));
          const name = (p: string) => (a.R ? p : basename(p) || p);
          io.out(
            entries.map((e) => (a.l ? lsLine(name(e.path), e.stats, e.target) : name(e.path))).join("\n") +
              (entries.length ? "\n" : ""),
          );
        });
      },
    )
    .command(
      "cat <image> <path>",
      "print a guest file",
      (y) =>
        imageOptions(y)
          .positional("image", { type: "string", demandOption: true })
          .positional("path", { type: "string", demandOption: true }),
      async (a) => {
        await withGuest(a.image as string, readOpenOptions(a), async (g) => {
          const data = await g.fs.readFile(a.path as string);
          if (a.json)
            return emitJson({
              path: a.path,
              size: data.length,
              base64: Buffer.from(data).toString("base64"),
            });
          // The bytes as they are (binaries, other encodings), like cat(1) and virt-cat.
          if (io.outBytes) io.outBytes(data);
          else io.out(new TextDecoder().decode(data));
        });
      },
    )
    .command(
      "stat <image> <path>",
      "metadata of a guest path (not following a final symlink)",
      (y) =>
        imageOptions(y)
          .positional("image", { type: "string", demandOption: true })
          .positional("path", { type: "string", demandOption: true }),
      async (a) => {
        await withGuest(a.image as string, readOpenOptions(a), async (g) => {
          const p = a.path as string;
          const s = await g.fs.lstat(p);
          const target = s.type === "symlink" ? await g.fs.readlink(p) : undefined;
          const xattrs = await g.fs.listxattr(p).catch(() => [] as string[]);
          const doc = { ...statJson(p, s), target: target ?? null, xattrs };
          if (a.json) return emitJson(doc);
          io.out(
            `${p}\n  type: ${s.type}${target !== undefined ? ` -> ${target}` : ""}\n  mode: ${doc.mode} (${modeString(s.type, s.mode)})\n  uid: ${s.uid}  gid: ${s.gid}\n  size: ${s.size}  links: ${s.nlink}  inode: ${s.ino}\n  mtime: ${doc.mtime}\n${xattrs.length ? `  xattrs: ${xattrs.join(", ")}\n` : ""}`,
          );
        });
      },
    )
    .command(
      "get <image> <guest> <host>",
      "copy a guest file or tree out (never follows guest symlinks onto host paths; never overwrites)",
      (y) =>
        imageOptions(y)
          .positional("image", { type: "string", demandOption: true })
          .positional("guest", { type: "string", demandOption: true })
          .positional("host", { type: "string", demandOption: true }),
      async (a) => {
        await withGuest(a.image as string, readOpenOptions(a), async (g) => {
          const { copyOut } = await import("../customize/copy-out.js");
          const r = await copyOut(g.fs, a.guest as string, a.host as string);
          if (a.json) return emitJson(r);
          say(
            a as unknown as Common,
            `copied ${r.files} files, ${r.dirs} directories, ${r.symlinks} symlinks to ${a.host}`,
          );
          for (const s of r.skipped) say(a as unknown as Common, `skipped ${s.path}: ${s.why}`);
        });
      },
    )
    .command(
      "diff <a> <b>",
      "guest files that differ between two images (content by xxhash64)",
      (y) =>
        y
          .positional("a", { type: "string", demandOption: true })
          .positional("b", { type: "string", demandOption: true }),
      async (a) => {
        await withGuest(a.a as string, {}, async (ga) => {
          await withGuest(a.b as string, {}, async (gb) => {
            const { diffGuests } = await import("../customize/diff.js");
            const d = await diffGuests(ga.fs, gb.fs);
            if (a.json) return emitJson(d);
            io.out(
              d
                .map(
                  (e) =>
                    `${e.kinds.join(",").padEnd(12)} ${e.path}${e.details.length ? `  (${e.details.join("; ")})` : ""}`,
                )
                .join("\n") + (d.length ? "\n" : ""),
            );
          });
        });
        image = undefined;
      },
    )
    .command(
      "rollback <image>",
      "restore IMAGE from the undo file an interrupted --in-place run left (IMAGE.imgpatch-undo)",
      (y) => y.positional("image", { type: "string", demandOption: true }),
      async (a) => {
        const path = a.image as string;
        image = path;
        const undo = undoPathFor(path);
        if (a["dry-run"]) {
          const h = await readUndoHeader(undo);
          return say(
            a as unknown as Common,
            `would restore ${path} from ${undo} (original size ${h.originalSize})`,
          );
        }
        const r = await rollbackInPlace(path);
        if (r === false) throw new UsageError(`no undo file ${undo}: nothing to roll back`, path);
        if (a.json) return emitJson({ image: path, undoFile: undo, restoredRanges: r.records, size: r.size });
        say(
          a as unknown as Common,
          `${path}: rolled back from ${undo} (${r.records} saved ranges restored, size ${r.size})`,
        );
      },
    )
    .command(
      "check <image>",
      "qcow2 metadata and ext4 consistency (e2fsck -fn when installed)",
      (y) => y.positional("image", { type: "string", demandOption: true }),
      async (a) => {
        image = a.image as string;
        const { checkImage } = await import("./check.js");
        const r = await checkImage(image);
        if (a.json) emitJson(r);
        else {
          for (const l of r.lines) io.out(`${l}\n`);
          io.out(r.clean ? "No errors were found.\n" : "Problems were found.\n");
        }
        if (!r.clean) code = EXIT.checkFailed;
      },
    )
    .command(
      "create <file> [size]",
      "create an empty image (qemu-img create)",
      (y) =>
        y
          .positional("file", { type: "string", demandOption: true })
          .positional("size", { type: "string", describe: "optional with -b (the backing file's size)" })
          .option("f", { type: "string", default: "qcow2", describe: "qcow2|raw" })
          .option("b", { type: "string", describe: "backing file" })
          .option("F", { type: "string", describe: "backing format" }),
      async (a) => {
        const file = a.file as string;
        image = file;
        const fmt = fmtArg(a.f, "-f") as DiskFormat;
        if (a["dry-run"]) return say(a as unknown as Common, `would create ${fmt} ${file}`);
        const tmp = join(dirname(file), `.${basename(file)}.create-${process.pid}.tmp`);
        try {
          if (fmt === "raw") {
            if (a.b) throw new UsageError("-b needs -f qcow2", file);
            await hostWriteFile(tmp, new Uint8Array(0), { flag: "wx" });
            if (a.size === undefined) throw new UsageError("create needs a SIZE", file);
            await truncate(tmp, parseSize(a.size as string));
          } else {
            const dev =
              a.b !== undefined
                ? await createQcow2(tmp, {
                    size: a.size !== undefined && a.size !== "" ? parseSize(a.size as string) : undefined,
                    backing: { path: a.b as string, format: fmtArg(a.F, "-F") },
                  })
                : await createQcow2(tmp, {
                    size: a.size === undefined ? missingSize(file) : parseSize(a.size as string),
                  });
            await dev.close();
          }
          await rename(tmp, file);
        } catch (err) {
          await rm(tmp, { force: true });
          throw err;
        }
        if (a.json) emitJson({ file, format: fmt });
        else say(a as unknown as Common, `created ${file} (${fmt})`);
      },
    )
    .command(
      "convert <src> <dst>",
      "copy an image to a new format (qemu-img convert)",
      (y) =>
        y
          .positional("src", { type: "string", demandOption: true })
          .positional("dst", { type: "string", demandOption: true })
          .option("O", { type: "string", default: "qcow2", describe: "output format qcow2|raw" })
          .option("f", { type: "string", describe: "input format" })
          .option("c", { type: "boolean", default: false, describe: "compress (qcow2)" }),
      async (a) => {
        const src = a.src as string;
        const dst = a.dst as string;
        image = src;
        const fmt = fmtArg(a.O, "-O") as DiskFormat;
        if (a["dry-run"]) return say(a as unknown as Common, `would convert ${src} to ${fmt} ${dst}`);
        const { device } = await openImage(src, { format: fmtArg(a.f, "-f") });
        const tmp = join(dirname(dst), `.${basename(dst)}.convert-${process.pid}.tmp`);
        try {
          const stats = await withProgressBar(
            ttyProgress(a as unknown as Common),
            `converting ${basename(src)}`,
            io.err,
            (onProgress) =>
              convertImage(device, tmp, { format: fmt, compress: a.c === true, overwrite: true, onProgress }),
          );
          await rename(tmp, dst);
          if (a.json) emitJson({ source: src, target: dst, format: fmt, stats });
          else say(a as unknown as Common, `converted ${src} -> ${dst} (${fmt}${a.c ? ", compressed" : ""})`);
        } catch (err) {
          await rm(tmp, { force: true });
          throw err;
        } finally {
          await device.close();
        }
      },
    )
    .command(
      "overlay <base> <out>",
      "create a qcow2 overlay whose backing file is BASE",
      (y) =>
        y
          .positional("base", { type: "string", demandOption: true })
          .positional("out", { type: "string", demandOption: true }),
      async (a) => {
        image = a.base as string;
        const g = await openGuest(a.base as string, { overlay: a.out as string });
        const r = await g.commit();
        if (a.json) emitJson({ base: a.base, overlay: r.output });
        else say(a as unknown as Common, `created overlay ${r.output} backed by ${a.base}`);
      },
    )
    .command(
      "customize [image]",
      "apply virt-customize-style operations in command-line order",
      (y) => {
        let z = outputModeOptions(imageOptions(y.positional("image", { type: "string" })))
          .option("add", {
            alias: "a",
            type: "string",
            describe: "the image (virt-customize style)",
          })
          .option("rpm-owner-fallback", {
            type: "boolean",
            describe:
              "--rpm: files owned by users/groups the guest lacks (made by %pre) go to root now, chowned at first boot",
          })
          .option("rpm-key", {
            type: "string",
            array: true,
            describe:
              "--rpm: trust this OpenPGP public key file (armored or binary; repeatable), besides the guest's /etc/pki/rpm-gpg/* and repo gpgkey=file:// keys",
          })
          .option("rpm-signature", {
            type: "string",
            choices: ["required", "if-present", "ignore"],
            describe:
              "--rpm: signature policy; if-present (default): a signed package must verify with a trusted key, unsigned ones pass; required: unsigned ones fail too",
          })
          .option("repo", {
            type: "string",
            array: true,
            describe:
              "--install/--deb: an extra apt source 'deb [options] URI SUITE COMPONENT...' (repeatable), besides the guest's own",
          })
          .option("install-recommends", {
            type: "boolean",
            describe:
              "--install/--deb: --no-install-recommends as apt (default: the guest's APT::Install-Recommends)",
          })
          .option("allow-unauthenticated", {
            type: "boolean",
            describe:
              "--install/--deb: use repositories whose Release signature does not verify (warned loudly)",
          });
        for (const name of OPERATION_NAMES) {
          const group = "Operations (applied in command-line order):";
          const describe = OPERATION_HELP[name];
          z = NO_ARG_OPS.has(name)
            ? z.option(name, { type: "boolean", group, describe })
            : z.option(name, { type: "string", group, describe });
        }
        return z;
      },
      async (a) => {
        const img = (a.image ?? a.add) as string | undefined;
        if (!img) throw new UsageError("customize needs an IMAGE (positional or -a IMAGE)");
        if (a.image && a.add) throw new UsageError("give the image once (positional or -a)");
        image = img;
        const steps = withRpmPolicy(await orderedSteps(argv.slice(argv.indexOf("customize") + 1)), a);
        const common = a as unknown as Common;
        const opts = { ...outputOptions(a), now: sourceDateEpoch(env) };
        const dry = a["dry-run"] === true;
        if (steps.length === 0) throw new UsageError("no operations given (see imgpatch customize --help)");
        if (!dry && !opts.overlay && !opts.output && !opts.inPlace) {
          throw new UsageError(
            "customize writes an output: give --overlay OUT, -o OUT or --in-place (or --dry-run)",
            img,
          );
        }
        const now = sourceDateEpoch(env);
        if (dry) {
          await withGuest(img, { format: opts.format, mounts: opts.mounts }, async (g) => {
            const rpmPlans: Array<{ file: string; nevra: string; files: number; scriptlets: number }> = [];
            const debPlans: Array<{ step: string; plan: unknown }> = [];
            for (const s of steps) {
              if (s.op === "install" || s.op === "deb") {
                const { planDebStep } = await installDeb();
                const plan = await planDebStep(
                  g.fs,
                  g.image,
                  s,
                  debOptionsOf(a, io.err, ttyProgress(common)),
                );
                debPlans.push({ step: stepLabel(s), plan });
                continue;
              }
              if (s.op !== "rpm") continue;
              const { planTransaction, readRpm } = await rpmInject();
              const { injectTargetFromGuestFs } = await rpmBridge();
              const pkg = await readRpm(s.host);
              try {
                const p = await planTransaction([pkg], injectTargetFromGuestFs(g.fs, g.image), {
                  missingOwner: a["rpm-owner-fallback"] ? "root" : "error",
                  signature: s.signature,
                  keys: s.keys,
                });
                for (const plan of p.plans) {
                  rpmPlans.push({
                    file: s.host,
                    nevra: plan.nevra,
                    files: plan.files.length,
                    scriptlets: p.firstboot.steps.length,
                  });
                }
              } finally {
                await pkg.close();
              }
            }
            if (a.json)
              return emitJson({ image: img, dryRun: true, operations: steps, rpm: rpmPlans, deb: debPlans });
            say(common, `dry run on ${img} (nothing is written):`);
            for (const s of steps) say(common, `  ${stepLabel(s)}`);
            for (const d of debPlans) for (const l of formatDebPlan(d.plan)) say(common, `  ${l}`);
            for (const r of rpmPlans)
              say(
                common,
                `  rpm ${r.file}: ${r.nevra}, ${r.files} entries, ${r.scriptlets} first-boot steps`,
              );
          });
          return;
        }
        progressOn = ttyProgress(common) && opts.output !== undefined;
        const result = await withGuest(img, opts, async (g) => {
          for (const w of g.warnings) if (common.verbose) io.err(`imgpatch: warning: ${img}: ${w}\n`);
          let i = 0;
          return runSteps(
            g,
            steps,
            {
              now,
              rpmMissingOwner: a["rpm-owner-fallback"] ? "root" : "error",
              deb: debOptionsOf(a, io.err, ttyProgress(common)),
              progress: ttyProgress(common)
                ? (label: string): StepProgress => progressBar(true, label, io.err)
                : undefined,
            },
            (step, lines) => {
              i++;
              progress(common, `[${i}/${steps.length}] ${step.op}`);
              if (common.verbose) for (const l of lines) say(common, `  ${l}`);
            },
          );
        });
        progressDone(common);
        const out = opts.overlay ?? opts.output ?? img;
        if (a.json)
          return emitJson({
            image: img,
            output: out,
            operations: result.map((r) => ({ ...r.step, changes: r.changes })),
          });
        say(common, `${img}: ${steps.length} operations applied -> ${out}`);
      },
    )
    .command(
      "elements <image> [elements..]",
      "bake diskimage-builder elements into the image (no chroot; install phases deferred to first boot)",
      (y) =>
        outputModeOptions(imageOptions(y))
          .positional("image", { type: "string", demandOption: true })
          .positional("elements", { type: "string", array: true })
          .option("rpm", {
            type: "string",
            describe:
              "the RPM route: agent packages (RDO os-collect-config, os-refresh-config, os-apply-config, python3-heat-agent*) unpacked by rpm-inject, then os-collect-config enabled (repeatable)",
          })
          .option("rpm-owner-fallback", { type: "boolean", describe: "see customize --rpm-owner-fallback" })
          .option("rpm-key", { type: "string", array: true, describe: "see customize --rpm-key" })
          .option("rpm-signature", {
            type: "string",
            choices: ["required", "if-present", "ignore"],
            describe: "see customize --rpm-signature",
          })
          .option("elements-path", {
            type: "string",
            describe: "colon-separated element directories (default $ELEMENTS_PATH)",
          })
          .option("wheels", {
            type: "string",
            describe: "host directory of wheels for the first-boot pip installs",
          })
          .option("offline", { type: "boolean", default: false, describe: "pip installs use only --wheels" })
          .option("allow-duplicate-hooks", { type: "boolean", default: false }),
      async (a) => {
        const img = a.image as string;
        image = img;
        const common = a as unknown as Common;
        const elements = (a.elements as string[] | undefined) ?? [];
        const rpms = a.rpm === undefined ? [] : (Array.isArray(a.rpm) ? a.rpm : [a.rpm]).map(String);
        if (elements.length === 0 && rpms.length === 0)
          throw new UsageError("give ELEMENT names or --rpm FILE", img);
        const elementsPath = (a["elements-path"] as string | undefined) ?? env.ELEMENTS_PATH;
        if (!elementsPath && elements.length > 0)
          throw new UsageError("no elements path: give --elements-path or set ELEMENTS_PATH");
        const opts = { ...outputOptions(a), now: sourceDateEpoch(env) };
        const dry = a["dry-run"] === true;
        if (!dry && !opts.overlay && !opts.output && !opts.inPlace) {
          throw new UsageError(
            "elements writes an output: give --overlay OUT, -o OUT or --in-place (or --dry-run)",
            img,
          );
        }
        const now = sourceDateEpoch(env);
        progressOn = ttyProgress(common) && !dry && opts.output !== undefined;
        const rpmLog: string[] = [];
        const r = await withGuest(
          img,
          dry ? { format: opts.format, mounts: opts.mounts } : opts,
          async (g) => {
            if (rpms.length > 0) {
              const { injectRpms, planTransaction, readRpm } = await rpmInject();
              const { injectTargetFromGuestFs, queueFirstbootPlan } = await rpmBridge();
              const pkgs = [];
              try {
                for (const f of rpms) pkgs.push(await readRpm(f));
                const target = injectTargetFromGuestFs(g.fs, g.image);
                const missingOwner = a["rpm-owner-fallback"] ? "root" : "error";
                const rpmOpts = { missingOwner, ...rpmPolicyOf(a) } as const;
                if (dry) {
                  const p = await planTransaction(pkgs, target, rpmOpts);
                  for (const plan of p.plans)
                    rpmLog.push(`rpm: would install ${plan.nevra} (${plan.files.length} entries)`);
                } else {
                  const t = await injectRpms(pkgs, target, rpmOpts);
                  for (const rep of t.reports)
                    rpmLog.push(`rpm: installed ${rep.nevra}: ${rep.written.length} files`);
                  for (const p of await queueFirstbootPlan(g.fs, t.firstboot))
                    rpmLog.push(`rpm: firstboot ${p}`);
                }
              } finally {
                for (const p of pkgs) await p.close();
              }
            }
            const { bakeElements } = await import("../elements/apply.js");
            const baked =
              elements.length > 0
                ? await bakeElements(
                    g.fs,
                    {
                      elementsPath: elementsPath as string,
                      elements,
                      wheelsDir: a.wheels as string | undefined,
                      offline: a.offline === true,
                      allowDuplicateHooks: a["allow-duplicate-hooks"] === true,
                    },
                    {
                      dryRun: dry,
                      mtime: now,
                      debPackages: { image: img, warn: (m: string) => io.err(`imgpatch: ${m}\n`) },
                    },
                  )
                : undefined;
            if (rpms.length > 0 && !dry) {
              const { finishRpmAgents } = await import("../elements/rpm-route.js");
              const fin = await finishRpmAgents(g.fs, { mtime: now });
              rpmLog.push(
                ...fin.actions.map((x) => `rpm route: ${x}`),
                ...fin.warnings.map((x) => `rpm route: warning: ${x}`),
              );
            }
            return baked;
          },
        );
        if (a.json)
          return emitJson({
            image: img,
            output: opts.overlay ?? opts.output ?? (opts.inPlace ? img : null),
            dryRun: dry,
            rpm: rpmLog,
            report: r?.plan.report ?? null,
            applied: r?.applied ?? null,
          });
        for (const l of rpmLog) say(common, l);
        if (r) say(common, r.text);
        if (r?.applied && common.verbose) for (const l of r.applied.log) say(common, `  ${l}`);
        if (!dry)
          say(
            common,
            `${img}: ${[...elements, ...rpms.map((f) => basename(f))].join(" ")} baked -> ${opts.overlay ?? opts.output ?? img}`,
          );
      },
    )
    .demandCommand(1, "give a command (imgpatch --help lists them)")
    .strict()
    .help()
    .version(VERSION)
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      throw new UsageError(msg);
    });

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
    return code;
  } catch (err) {
    const c = exitCodeOf(err);
    io.err(`${errorLine(err, image)}\n`);
    if (c === EXIT.usage && !image && !(err instanceof UsageError && err.file))
      io.err("imgpatch: see imgpatch --help\n");
    if (debug && err instanceof Error && err.stack) io.err(`${err.stack}\n`);
    return c;
  }
}
