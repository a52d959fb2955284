import { readFile, symlink } from "node:fs/promises";
import { join, resolve as resolvePath } from "node:path";
import { tempDir } from "./temp.js";
import { OracleError, runTool } from "./tools.js";

/** An image holding an ext2/3/4 filesystem, optionally at a byte offset (a partition). */
export type FsTarget = string | { path: string; offset?: number };

/** File types as both our manifests and the debugfs parsers report them. */
export type FileType = "file" | "dir" | "symlink" | "chardev" | "blockdev" | "fifo" | "socket";

const TYPE_BITS: Record<FileType, number> = {
  fifo: 0o010000,
  chardev: 0o020000,
  dir: 0o040000,
  blockdev: 0o060000,
  file: 0o100000,
  symlink: 0o120000,
  socket: 0o140000,
};

/** The type encoded in the S_IFMT bits of a mode. */
export function fileTypeOfMode(mode: number): FileType | undefined {
  const fmt = mode & 0o170000;
  for (const [t, bits] of Object.entries(TYPE_BITS)) if (bits === fmt) return t as FileType;
  return undefined;
}

/**
 * e2fsprogs names a filesystem inside a larger image as `image?offset=N` (unix_io options).
 * A path that itself contains '?' would be misparsed, so it is reached through a symlink.
 */
async function fsSpec(target: FsTarget): Promise<string> {
  const path = typeof target === "string" ? target : target.path;
  const offset = typeof target === "string" ? 0 : (target.offset ?? 0);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`bad filesystem offset ${offset}`);
  let p = path;
  if (p.includes("?")) {
    const dir = await tempDir("imgpatch-fslink-");
    p = join(dir, "image");
    await symlink(resolvePath(path), p);
  }
  return offset > 0 ? `${p}?offset=${offset}` : p;
}

function describeTarget(target: FsTarget): string {
  if (typeof target === "string") return target;
  return target.offset ? `${target.path}@${target.offset}` : target.path;
}

// ---------------------------------------------------------------------------------------------
// e2fsck

export interface E2fsckResult {
  /** Exit code 0 and nothing reported beyond the pass banners and the summary line. */
  clean: boolean;
  /** 0 clean, 4 errors left uncorrected (-n), 8 operational error (e.g. no valid superblock)... */
  exitCode: number;
  /** Every reported line that is not a pass banner, the summary or the version banner. */
  problems: string[];
  /** stdout followed by stderr, as printed. */
  output: string;
}

const E2FSCK_NOISE = [
  /^e2fsck \d+\.\d+/, // version banner
  /^Pass \d[A-Z]?: /, // pass headers
  /^\S.*: \d+\/\d+ files \(.*\), \d+\/\d+ blocks$/, // summary
  /\*{5,} WARNING: Filesystem still has errors \*{5,}/, // restates the problems
];

/** `e2fsck -fn`: a forced, read-only check. */
export async function e2fsck(target: FsTarget): Promise<E2fsckResult> {
  const spec = await fsSpec(target);
  const r = await runTool("e2fsck", ["-fn", spec]);
  const stdout = r.stdout.toString("utf8");
  const output = stdout + r.stderr;
  const problems = output
    .split("\n")
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== "" && !E2FSCK_NOISE.some((re) => re.test(l)));
  if (r.exitCode >= 16) {
    throw new OracleError(
      `e2fsck on ${describeTarget(target)} failed: ${output}`,
      "e2fsck",
      ["-fn", spec],
      r.exitCode,
      r.stderr,
    );
  }
  return { clean: r.exitCode === 0 && problems.length === 0, exitCode: r.exitCode, problems, output };
}

// ---------------------------------------------------------------------------------------------
// dumpe2fs

/** `dumpe2fs -h`: superblock (and journal superblock) fields, keyed by their printed labels. */
export async function dumpe2fs(target: FsTarget): Promise<Record<string, string>> {
  const spec = await fsSpec(target);
  const r = await runTool("dumpe2fs", ["-h", spec]);
  if (r.exitCode !== 0) {
    throw new OracleError(
      `dumpe2fs on ${describeTarget(target)} failed: ${r.stderr.trim()}`,
      "dumpe2fs",
      ["-h", spec],
      r.exitCode,
      r.stderr,
    );
  }
  const fields: Record<string, string> = {};
  for (const line of r.stdout.toString("utf8").split("\n")) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (m) fields[m[1].trim()] = m[2].trim();
  }
  return fields;
}

// ---------------------------------------------------------------------------------------------
// debugfs

export interface DebugfsOptions {
  /** Open read-write (`-w`). */
  write?: boolean;
  /** Return stdout even when debugfs printed errors on stderr (default: throw). */
  allowErrors?: boolean;
}

export interface DebugfsRawResult {
  stdout: Buffer;
  /** stderr without the version banner. */
  stderr: string;
  exitCode: number;
}

/** Quote an argument for debugfs's command-line parser (double quotes, `""` for a quote). */
export function debugfsQuote(arg: string): string {
  if (arg !== "" && !/[\s"]/.test(arg)) return arg;
  return `"${arg.replaceAll('"', '""')}"`;
}

/**
 * Run debugfs commands. One command goes through `-R` (stdout is just its output); several go
 * through `-f -` on stdin, in which case debugfs echoes `debugfs: <command>` before each output.
 */
export async function debugfsRaw(
  target: FsTarget,
  commands: readonly string[],
  opts: { write?: boolean } = {},
): Promise<DebugfsRawResult> {
  if (commands.length === 0) throw new Error("debugfs: no commands");
  for (const c of commands) if (c.includes("\n")) throw new Error(`debugfs command contains a newline: ${c}`);
  const spec = await fsSpec(target);
  const args = [...(opts.write ? ["-w"] : [])];
  let input: string | undefined;
  if (commands.length === 1) args.push("-R", commands[0]);
  else {
    args.push("-f", "-");
    input = `${commands.join("\n")}\n`;
  }
  args.push(spec);
  const r = await runTool("debugfs", args, { input });
  const stderr = r.stderr
    .split("\n")
    .filter((l) => l.trim() !== "" && !/^debugfs \d+\.\d+/.test(l))
    .join("\n");
  return { stdout: r.stdout, stderr, exitCode: r.exitCode };
}

/** Run debugfs commands and return stdout; errors on stderr throw unless `allowErrors`. */
export async function debugfs(
  target: FsTarget,
  commands: readonly string[],
  opts: DebugfsOptions = {},
): Promise<string> {
  const r = await debugfsRaw(target, commands, opts);
  if (r.exitCode !== 0 || (r.stderr !== "" && !opts.allowErrors)) {
    throw new OracleError(
      `debugfs ${JSON.stringify(commands)} on ${describeTarget(target)}: ${r.stderr || `exit ${r.exitCode}`}`,
      "debugfs",
      commands,
      r.exitCode,
      r.stderr,
    );
  }
  return r.stdout.toString("utf8");
}

/**
 * The contents of a file (`debugfs cat`; a final symlink component is not followed), exactly
 * i_size bytes long. debugfs 1.47.0 mishandles inline_data inodes: it prints the whole inline area
 * (60+ bytes, zero padded) and stops there even when i_size is larger (mke2fs -d makes such
 * files from sparse sources; the kernel reads the rest as zeros). So the output is cut or
 * zero-extended to i_size for inline inodes.
 */
export async function debugfsCat(target: FsTarget, path: string): Promise<Buffer> {
  const r = await debugfsRaw(target, [`cat ${debugfsQuote(path)}`]);
  if (r.exitCode !== 0 || r.stderr !== "") {
    throw new OracleError(
      `debugfs cat ${path} on ${describeTarget(target)}: ${r.stderr}`,
      "debugfs",
      ["cat", path],
      r.exitCode,
      r.stderr,
    );
  }
  return catToSize(r.stdout, parseDebugfsStat(await debugfs(target, [`stat ${debugfsQuote(path)}`])));
}

/** What `debugfs cat` printed, cut or zero-extended to i_size as debugfsCat describes. */
export function catToSize(out: Buffer, st: DebugfsStat): Buffer {
  if (out.length > st.size) return out.subarray(0, st.size);
  if (out.length < st.size && st.flags & INLINE_DATA_FL) {
    return Buffer.concat([out, Buffer.alloc(st.size - out.length)]);
  }
  return out;
}

/** A slow symlink keeps its target in a data block (no "Fast link dest" in its stat). */
export function isSlowSymlink(st: DebugfsStat): boolean {
  return st.type === "symlink" && st.linkTarget === undefined;
}

const INLINE_DATA_FL = 0x10000000;

export interface Timestamp {
  /** Seconds since the epoch (the 32-bit field sign-extended plus the extra epoch bits). */
  sec: number;
  nsec: number;
}

export interface DebugfsStat {
  inode: number;
  type: FileType;
  /** Full st_mode: type bits | permission bits (debugfs prints only the latter). */
  mode: number;
  /** Permission bits only (mode & 0o7777). */
  perm: number;
  uid: number;
  gid: number;
  /** Project id, when the inode is large enough to hold one. */
  project?: number;
  size: number;
  links: number;
  /** i_blocks as printed ("Blockcount"). */
  blockcount: number;
  /** Inode flags (EXT4_*_FL). */
  flags: number;
  generation: number;
  /** Block holding the inode's external xattrs (0 when none). */
  fileAcl: number;
  atime?: Timestamp;
  mtime?: Timestamp;
  ctime?: Timestamp;
  crtime?: Timestamp;
  dtime?: Timestamp;
  /** "Size of extra inode fields", when the inode is larger than 128 bytes. */
  extraIsize?: number;
  /** For device nodes. */
  rdev?: { major: number; minor: number };
  /** For symlinks: the target (from "Fast link dest" or, for slow links, the link's data). */
  linkTarget?: string;
  /** For inline_data inodes: bytes of inline storage. */
  inlineDataSize?: number;
  /** The whole stat output, for anything not parsed here. */
  raw: string;
}

const STAT_TYPES: Record<string, FileType> = {
  regular: "file",
  directory: "dir",
  symlink: "symlink",
  FIFO: "fifo",
  socket: "socket",
  "character special": "chardev",
  "block special": "blockdev",
};

function num(raw: string, re: RegExp, what: string): number {
  const m = re.exec(raw);
  if (!m) throw new Error(`debugfs stat: no ${what} in output:\n${raw}`);
  return Number(m[1]);
}

function optNum(raw: string, re: RegExp): number | undefined {
  const m = re.exec(raw);
  return m ? Number(m[1]) : undefined;
}

function parseTime(raw: string, name: string): Timestamp | undefined {
  const m = new RegExp(`^\\s*${name}: 0x([0-9a-f]{8})(?::([0-9a-f]{8}))? --`, "m").exec(raw);
  if (!m) return undefined;
  const lo = Number.parseInt(m[1], 16) | 0; // the on-disk field is signed
  if (m[2] === undefined) return { sec: lo, nsec: 0 };
  const extra = Number.parseInt(m[2], 16);
  return { sec: lo + (extra & 3) * 2 ** 32, nsec: extra >>> 2 };
}

/** Parse the text printed by debugfs `stat` (exposed for tests of odd outputs). */
export function parseDebugfsStat(raw: string): DebugfsStat {
  const head = /^Inode: (\d+)\s+Type: (.+?)\s+Mode:\s+([0-7]+)\s+Flags: 0x([0-9a-f]+)/m.exec(raw);
  if (!head) throw new Error(`debugfs stat: unrecognised output:\n${raw}`);
  const type = STAT_TYPES[head[2]];
  if (!type) throw new Error(`debugfs stat: unknown type '${head[2]}'`);
  const perm = Number.parseInt(head[3], 8);
  const st: DebugfsStat = {
    inode: Number(head[1]),
    type,
    mode: TYPE_BITS[type] | perm,
    perm,
    // debugfs prints ids with %d: 4294967294 shows as -2.
    uid: num(raw, /^User:\s+(-?\d+)/m, "User") >>> 0,
    gid: num(raw, /\bGroup:\s+(-?\d+)/m, "Group") >>> 0,
    project: optNum(raw, /\bProject:\s+(\d+)/m),
    size: num(raw, /^User:.*\bSize: (\d+)/m, "Size"),
    links: num(raw, /^Links: (\d+)/m, "Links"),
    blockcount: num(raw, /\bBlockcount: (\d+)/m, "Blockcount"),
    flags: Number.parseInt(head[4], 16),
    generation: num(raw, /^Generation: (\d+)/m, "Generation"),
    fileAcl: num(raw, /^File ACL: (\d+)/m, "File ACL"),
    atime: parseTime(raw, "atime"),
    mtime: parseTime(raw, "mtime"),
    ctime: parseTime(raw, "ctime"),
    crtime: parseTime(raw, "crtime"),
    dtime: parseTime(raw, "dtime"),
    extraIsize: optNum(raw, /^Size of extra inode fields: (\d+)/m),
    inlineDataSize: optNum(raw, /^Size of inline data: (\d+)/m),
    raw,
  };
  const dev = /^(?:\(New-style\) )?Device major\/minor number: (\d+):(\d+)/m.exec(raw);
  if (dev) st.rdev = { major: Number(dev[1]), minor: Number(dev[2]) };
  const fast = /^Fast link dest: "(.*)"$/m.exec(raw);
  if (fast) st.linkTarget = fast[1];
  return st;
}

/** `debugfs stat`: the inode's fields, and a symlink's target. */
export async function debugfsStat(target: FsTarget, path: string): Promise<DebugfsStat> {
  const raw = await debugfs(target, [`stat ${debugfsQuote(path)}`]);
  const st = parseDebugfsStat(raw);
  if (isSlowSymlink(st)) {
    // A slow symlink keeps its target in a data block; cat reads it (it does not follow links).
    st.linkTarget = (await debugfsCat(target, path)).toString("utf8");
  }
  return st;
}

export interface DebugfsDirEntry {
  name: string;
  inode: number;
  /** Full st_mode of the entry's inode. */
  mode: number;
  type: FileType | undefined;
  uid: number;
  gid: number;
  /** Size, as listed (debugfs prints none for directories). */
  size?: number;
}

/** `debugfs ls -p`: the live entries of a directory, including `.` and `..`, in on-disk order. */
export async function debugfsLs(target: FsTarget, dir: string): Promise<DebugfsDirEntry[]> {
  return parseDebugfsLs(await debugfs(target, [`ls -p ${debugfsQuote(dir)}`]));
}

/** Parse the text printed by debugfs `ls -p`. */
export function parseDebugfsLs(out: string): DebugfsDirEntry[] {
  const entries: DebugfsDirEntry[] = [];
  for (const line of out.split("\n")) {
    if (line === "") continue;
    // "/ino/mode/uid/gid/name/size/": names cannot contain '/', so the fields split cleanly.
    const f = line.split("/");
    if (f.length !== 8 || f[0] !== "" || f[7] !== "") throw new Error(`debugfs ls -p: bad line '${line}'`);
    // An unused record (inode 0) is no entry; debugfs 1.47.0 shows one for empty inline dirs.
    if (f[1] === "0") continue;
    const mode = Number.parseInt(f[2], 8);
    entries.push({
      name: f[5],
      inode: Number(f[1]),
      mode,
      type: fileTypeOfMode(mode),
      uid: Number(f[3]),
      gid: Number(f[4]),
      size: f[6] === "" ? undefined : Number(f[6]),
    });
  }
  return entries;
}

/**
 * Extended attributes of an inode (names with their namespace prefix, raw values), read with
 * `ea_get -f`. `system.data` (the inline_data storage, not a user-visible xattr) is left out.
 */
export async function debugfsXattrs(target: FsTarget, path: string): Promise<Record<string, Buffer>> {
  const names = parseEaListNames(await debugfs(target, [`ea_list ${debugfsQuote(path)}`]));
  const result: Record<string, Buffer> = {};
  if (names.length === 0) return result;
  const dir = await tempDir("imgpatch-xattr-");
  await debugfs(
    target,
    names.map(
      (n, i) => `ea_get -f ${debugfsQuote(join(dir, String(i)))} ${debugfsQuote(path)} ${debugfsQuote(n)}`,
    ),
  );
  for (const [i, n] of names.entries()) result[n] = await readFile(join(dir, String(i)));
  return result;
}

/** The attribute names debugfs `ea_list` printed, without `system.data` (inline data storage). */
export function parseEaListNames(listing: string): string[] {
  const names: string[] = [];
  for (const line of listing.split("\n")) {
    const m = /^ {2}(\S+) \((\d+)\)/.exec(line);
    if (m && m[1] !== "system.data") names.push(m[1]);
  }
  return names;
}

/**
 * `debugfs blocks`: the physical blocks of an inode in logical order, as debugfs lists them (for
 * block-mapped files this includes the indirect blocks; holes are skipped). Fast symlinks and
 * inline-data inodes have none.
 */
export async function debugfsBlocks(target: FsTarget, path: string): Promise<number[]> {
  // debugfs 1.47.0 reads a fast symlink's target bytes as block numbers; such inodes (and inline
  // data ones) own no blocks.
  const st = parseDebugfsStat(await debugfs(target, [`stat ${debugfsQuote(path)}`]));
  if (st.flags & INLINE_DATA_FL || /^Fast link dest: /m.test(st.raw)) return [];
  const out = await debugfs(target, [`blocks ${debugfsQuote(path)}`]);
  return out
    .split(/\s+/)
    .filter(Boolean)
    .map((w) => {
      if (!/^\d+$/.test(w)) throw new Error(`debugfs blocks ${path}: unexpected '${w}'`);
      return Number(w);
    });
}

/**
 * `debugfs rdump`: copy a file or directory tree out of the filesystem into `destDir` (which
 * must exist); returns the path of the copy. debugfs restores modes, owners and times.
 */
export async function debugfsRdump(target: FsTarget, path: string, destDir: string): Promise<string> {
  await debugfs(target, [`rdump ${debugfsQuote(path)} ${debugfsQuote(destDir)}`]);
  const base = path === "/" ? "" : path.replace(/\/+$/, "").split("/").pop()!;
  return join(destDir, base);
}
