/**
 * Property test: random sequences of every editing operation, applied to an in-memory model and
 * to a real image on each feature set. Each operation must succeed exactly when the model says
 * so; afterwards e2fsck -fn is clean and both debugfs and our reader agree with the model
 * (tree, types, modes, owners, content, link targets, link counts, xattrs).
 * On inline_data, the inline flag of files, directories and symlinks is checked too wherever the
 * model can tell what the kernel would do (see `inl`); on meta_bg, the descriptors read through a
 * backup superblock must match the primary.
 * Two containers as well: the filesystem in a partition of a GPT disk made by sfdisk (found by our
 * parser, edited through a RangeDevice; not one byte outside the partition may change), and in a
 * qcow2 v3 overlay with small clusters over a qcow2 base (qemu-img check clean, the base
 * untouched; the checks run on `qemu-img convert -O raw` of the overlay).
 * IMGPATCH_PROPERTY_RUNS sets the number of runs per configuration (default 5);
 * IMGPATCH_FC_SEED / IMGPATCH_FC_PATH replay a seed and path fast-check reported;
 * IMGPATCH_FC_SHRINK=1 shrinks a failure instead of stopping at the first counterexample.
 */

import { createHash, randomBytes } from "node:crypto";
import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type BlockDevice, FileDevice, RangeDevice, readPartitionTable } from "@imgpatch/disk";
import { Ext4Editor, Ext4Fs, Ext4NoSpaceError } from "@imgpatch/ext4";
import { createOverlay } from "@imgpatch/qcow2";
import {
  DebugfsBatch,
  describeWithTools,
  e2fsck,
  type FsTarget,
  qemuImg,
  qemuImgCheck,
  qemuImgInfo,
  runToolOk,
  tempDir,
} from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { FEATURE_SETS, makeImage } from "./editor-helpers.js";

const RUNS = Number(process.env.IMGPATCH_PROPERTY_RUNS ?? 5);
/** Replay a reported failure: IMGPATCH_FC_SEED (and IMGPATCH_FC_PATH) as fast-check printed them. */
const REPLAY = process.env.IMGPATCH_FC_SEED
  ? { seed: Number(process.env.IMGPATCH_FC_SEED), path: process.env.IMGPATCH_FC_PATH || undefined }
  : {};
const NAMES = ["a", "b", "c", "d"];
/** Rarer long names: a directory holding them outgrows i_block (and then system.data). */
const LONG_NAMES = ["entry-with-a-longer-name-1", "entry-with-a-longer-name-2"];
const XATTR_NAMES = ["user.one", "user.two", "security.selinux", "trusted.t"];

type Kind = "file" | "dir" | "symlink" | "fifo";
interface Node {
  kind: Kind;
  mode: number;
  uid: number;
  gid: number;
  data: Uint8Array;
  target: string;
  xattrs: Map<string, string>;
  children: Map<string, Node>;
  /**
   * inline_data: must the inode be inline (true), must it not (false), or can the model not
   * tell (undefined: it depends on layout details such as record fragmentation)?
   */
  inl?: boolean;
  /** Ever had an xattr (they take the room inline data could use). */
  hadXattrs?: boolean;
}

const newNode = (kind: Kind, mode: number): Node => ({
  kind,
  mode,
  uid: 0,
  gid: 0,
  data: new Uint8Array(0),
  target: "",
  xattrs: new Map(),
  children: new Map(),
});

type Op =
  /** With `chunk`, the content comes as a stream of chunks that long (replacement is then all or nothing too). */
  | { op: "writeFile"; p: string[]; size: number; byte: number; mode: number; chunk?: number }
  | { op: "writeAt"; p: string[]; offset: number; size: number; byte: number }
  | { op: "mkdir"; p: string[]; mode: number }
  | { op: "symlink"; p: string[]; target: string }
  | { op: "link"; p: string[]; q: string[] }
  | { op: "unlink" | "rmdir" | "rm"; p: string[] }
  | { op: "rename"; p: string[]; q: string[] }
  | { op: "chmod"; p: string[]; mode: number }
  | { op: "chown"; p: string[]; uid: number; gid: number }
  | { op: "truncate"; p: string[]; len: number }
  | { op: "setxattr"; p: string[]; name: string; size: number }
  | { op: "removexattr"; p: string[]; name: string }
  | { op: "mknod"; p: string[] };

const nameArb = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...NAMES) },
  { weight: 1, arbitrary: fc.constantFrom(...LONG_NAMES) },
);
const pathArb = fc.oneof(
  { weight: 2, arbitrary: fc.tuple(nameArb) },
  { weight: 3, arbitrary: fc.tuple(nameArb, nameArb) },
  { weight: 2, arbitrary: fc.tuple(nameArb, nameArb, nameArb) },
) as fc.Arbitrary<string[]>;
/** Every sequence starts from a small tree so later operations find parents. */
const PRELUDE: Op[] = [
  { op: "mkdir", p: ["a"], mode: 0o755 },
  { op: "mkdir", p: ["b"], mode: 0o700 },
  { op: "mkdir", p: ["a", "b"], mode: 0o750 },
  { op: "mkdir", p: ["b", "c"], mode: 0o755 },
  { op: "writeFile", p: ["a", "c"], size: 5000, byte: 1, mode: 0o644 },
  { op: "writeFile", p: ["b", "a"], size: 10, byte: 2, mode: 0o600 },
];
const modeArb = fc.integer({ min: 0, max: 0o7777 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("writeFile" as const),
      p: pathArb,
      size: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 70_000 })),
      byte: fc.integer({ min: 0, max: 255 }),
      mode: modeArb,
      chunk: fc.option(fc.integer({ min: 1, max: 9000 }), { nil: undefined, freq: 3 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("writeAt" as const),
      p: pathArb,
      offset: fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 80_000 })),
      size: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 20_000 })),
      byte: fc.integer({ min: 1, max: 255 }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("mkdir" as const), p: pathArb, mode: modeArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("symlink" as const),
      p: pathArb,
      // Fast, inline where inline_data is on (60..128 bytes with 256-byte inodes), slow.
      target: fc.oneof(
        fc.constant("x"),
        fc.constant(`/no/${"where/".repeat(15)}`),
        fc.constant(`/far/${"away/".repeat(60)}`),
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("link" as const), p: pathArb, q: pathArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constantFrom("unlink" as const, "rmdir" as const, "rm" as const),
      p: pathArb,
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("rename" as const), p: pathArb, q: pathArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("chmod" as const), p: pathArb, mode: modeArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("chown" as const),
      p: pathArb,
      uid: fc.integer({ min: 0, max: 70_000 }),
      gid: fc.integer({ min: 0, max: 70_000 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("truncate" as const),
      p: pathArb,
      len: fc.integer({ min: 0, max: 80_000 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("setxattr" as const),
      p: pathArb,
      name: fc.constantFrom(...XATTR_NAMES),
      size: fc.integer({ min: 0, max: 300 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("removexattr" as const),
      p: pathArb,
      name: fc.constantFrom(...XATTR_NAMES),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("mknod" as const), p: pathArb }) },
);

class Model {
  root = newNode("dir", 0o755);
  /** Node at a path without following symlinks; undefined when missing or a component is not a dir. */
  get(p: string[]): Node | undefined {
    let cur: Node | undefined = this.root;
    for (const c of p) {
      if (cur?.kind !== "dir") return undefined;
      cur = cur.children.get(c);
    }
    return cur;
  }
  /** Does resolving the parent of p go through a symlink or a non-directory? */
  parentOk(p: string[]): Node | undefined {
    const parent = this.get(p.slice(0, -1));
    return parent && parent.kind === "dir" ? parent : undefined;
  }
  nlink(target: Node): number {
    let n = 0;
    const walk = (d: Node) => {
      for (const c of d.children.values()) {
        if (c === target) n++;
        if (c.kind === "dir") walk(c);
      }
    };
    walk(this.root);
    return n;
  }
}

const bytes = (size: number, byte: number) => new Uint8Array(size).fill(byte);

/** Largest inline content with 256-byte inodes and no other attribute: 60 + 68 bytes. */
const INLINE_MAX = 128;
const recSize = (name: string) => 8 + ((Buffer.byteLength(name) + 3) & ~3);
/** A regular file's inline state after its content became `size` bytes. */
function fileInl(n: Node, size: number, fresh: boolean): boolean | undefined {
  if (size > INLINE_MAX) return false;
  if (fresh) return size > 0; // the kernel makes an empty new file a block file
  if (n.inl === false) return false;
  if (n.inl === true && size <= 60 && !n.hadXattrs) return true; // stays inline, even when emptied
  return undefined;
}
/** A directory is surely still inline while its records (plus one about to go) fit i_block's 56 bytes. */
function dirGrew(d: Node, extra = 0): void {
  if (d.inl !== true) return;
  let sum = extra;
  for (const k of d.children.keys()) sum += recSize(k);
  if (sum > 56 || d.hadXattrs) d.inl = undefined;
}
const str = (p: string[]) => `/${p.join("/")}`;

/** Apply to the model: true when the operation must succeed; "skip" when it is outside the model (symlink following). */
function applyModel(m: Model, o: Op): boolean | "skip" {
  const parent = m.parentOk(o.p);
  const name = o.p[o.p.length - 1];
  const node = m.get(o.p);
  // Any symlink on the way: the editor would follow it; the model does not.
  for (let i = 1; i < o.p.length; i++) if (m.get(o.p.slice(0, i))?.kind === "symlink") return "skip";
  switch (o.op) {
    case "writeFile": {
      if (!parent) return false;
      if (node?.kind === "symlink") return "skip";
      if (node && node.kind !== "file") return false;
      const n = node ?? newNode("file", o.mode);
      const inl = fileInl(n, o.size, !node);
      // A stream's length is known only at its end: where the data lands is left open, except that
      // a file in blocks stays there.
      n.inl = o.chunk === undefined || inl === false ? inl : undefined;
      n.data = bytes(o.size, o.byte);
      n.mode = o.mode;
      parent.children.set(name, n);
      if (!node) dirGrew(parent);
      return true;
    }
    case "writeAt": {
      if (node?.kind === "symlink") return "skip";
      if (node?.kind !== "file") return false;
      if (o.size === 0) return true;
      const next = new Uint8Array(Math.max(node.data.length, o.offset + o.size));
      next.set(node.data);
      next.fill(o.byte, o.offset, o.offset + o.size);
      node.inl = fileInl(node, next.length, false);
      node.data = next;
      return true;
    }
    case "mkdir":
      if (!parent || node) return false;
      parent.children.set(name, { ...newNode("dir", o.mode), inl: true });
      dirGrew(parent);
      return true;
    case "symlink": {
      if (!parent || node) return false;
      const n = newNode("symlink", 0o777);
      n.target = o.target;
      n.inl = o.target.length >= 60 && o.target.length <= INLINE_MAX;
      parent.children.set(name, n);
      dirGrew(parent);
      return true;
    }
    case "mknod":
      if (!parent || node) return false;
      parent.children.set(name, newNode("fifo", 0o644));
      dirGrew(parent);
      return true;
    case "link": {
      for (let i = 1; i < o.q.length; i++) if (m.get(o.q.slice(0, i))?.kind === "symlink") return "skip";
      const qp = m.parentOk(o.q);
      if (!node || node.kind === "dir" || !qp || m.get(o.q)) return false;
      qp.children.set(o.q[o.q.length - 1], node);
      dirGrew(qp);
      return true;
    }
    case "unlink":
      if (!node || node.kind === "dir" || !parent) return false;
      parent.children.delete(name);
      return true;
    case "rmdir":
      if (node?.kind !== "dir" || node.children.size > 0 || !parent) return false;
      parent.children.delete(name);
      return true;
    case "rm":
      if (!node || !parent) return false;
      parent.children.delete(name);
      return true;
    case "rename": {
      for (let i = 1; i < o.q.length; i++) if (m.get(o.q.slice(0, i))?.kind === "symlink") return "skip";
      const qp = m.parentOk(o.q);
      if (!node || !parent || !qp) return false;
      const dst = m.get(o.q);
      if (node.kind === "dir" && o.q.length >= o.p.length && o.p.every((c, i) => o.q[i] === c)) {
        return str(o.p) === str(o.q);
      }
      if (dst === node) return true;
      if (dst) {
        if (node.kind === "dir" && dst.kind !== "dir") return false;
        if (node.kind !== "dir" && dst.kind === "dir") return false;
        if (dst.kind === "dir" && dst.children.size > 0) return false;
      }
      // The new name goes in before the old one leaves (same directory: both at once).
      if (!dst) dirGrew(qp, qp === parent ? recSize(o.q[o.q.length - 1]) : 0);
      parent.children.delete(name);
      qp.children.set(o.q[o.q.length - 1], node);
      return true;
    }
    case "chmod":
    case "chown":
    case "setxattr":
    case "removexattr":
    case "truncate": {
      if (!node) return false;
      if (node.kind === "symlink") return "skip";
      if (o.op === "chmod") node.mode = o.mode;
      else if (o.op === "chown") {
        node.uid = o.uid;
        node.gid = o.gid;
      } else if (o.op === "truncate") {
        if (node.kind !== "file") return false;
        const d = new Uint8Array(o.len);
        d.set(node.data.subarray(0, Math.min(o.len, node.data.length)));
        node.inl = fileInl(node, o.len, false);
        node.data = d;
      } else if (o.op === "setxattr") {
        if (node.kind === "fifo") return "skip";
        node.hadXattrs = true;
        if (node.kind === "dir") dirGrew(node);
        node.xattrs.set(o.name, Buffer.from(bytes(o.size, o.size & 0xff)).toString("hex"));
      } else {
        if (!node.xattrs.has(o.name)) return false;
        node.xattrs.delete(o.name);
      }
      return true;
    }
  }
}

const TYPE: Record<Kind, string> = { file: "file", dir: "dir", symlink: "symlink", fifo: "fifo" };

/** `path` is the image file, or the disk and the filesystem's byte offset in it (a partition). */
async function check(path: FsTarget, m: Model, inline: boolean): Promise<number> {
  let inlineChecked = 0;
  const r = await e2fsck(path);
  expect(r.problems, r.output).toEqual([]);
  expect(r.clean, r.output).toBe(true);
  const file = typeof path === "string" ? path : path.path;
  const offset = typeof path === "string" ? 0 : (path.offset ?? 0);
  // Every debugfs read of the walk below, from one debugfs process (answers as from debugfsStat etc.).
  const req = { ls: [] as string[], stat: [] as string[], cat: [] as string[], xattrs: [] as string[] };
  const collect = (dir: Node, p: string[]) => {
    req.ls.push(str(p));
    for (const [name, n] of dir.children) {
      const s = str([...p, name]);
      req.stat.push(s);
      if (n.kind === "file" && n.data.length < 100_000) req.cat.push(s);
      if (n.kind === "file" || n.kind === "dir") req.xattrs.push(s);
      if (n.kind === "dir") collect(n, [...p, name]);
    }
  };
  collect(m.root, []);
  const dfs = await DebugfsBatch.read(path, req);
  const dev = await FileDevice.open(file, { readOnly: true });
  const fs = await Ext4Fs.open(offset ? new RangeDevice(dev, offset, dev.size - offset) : dev);
  try {
    const walk = async (dir: Node, p: string[]) => {
      const want = [...dir.children.keys()].sort();
      const ours = (await fs.readdir(str(p))).sort();
      expect(ours, `reader listing of ${str(p)}`).toEqual(want);
      const theirs = (await dfs.ls(str(p))).map((e) => e.name).filter((n) => n !== "." && n !== "..");
      expect(theirs.sort(), `debugfs listing of ${str(p)}`).toEqual(want);
      for (const [name, n] of dir.children) {
        const cp = [...p, name];
        const s = str(cp);
        const st = await dfs.stat(s);
        const ls = await fs.lstat(s);
        expect(st.type, s).toBe(TYPE[n.kind]);
        if (n.kind !== "fifo") {
          const want = inline ? n.inl : false;
          if (want !== undefined) {
            expect((st.flags & 0x10000000) !== 0, `${s} inline flag`).toBe(want);
            if (want) inlineChecked++;
          }
        }
        expect(ls.uid, s).toBe(n.uid);
        expect(st.uid, s).toBe(n.uid);
        expect(st.gid, s).toBe(n.gid);
        if (n.kind !== "symlink") {
          expect(st.perm, s).toBe(n.mode);
          expect(ls.mode & 0o7777, s).toBe(n.mode);
        }
        if (n.kind === "file") {
          expect(st.links, s).toBe(m.nlink(n));
          expect(st.size, s).toBe(n.data.length);
          const data = await fs.readFile(s);
          expect(Buffer.compare(data, Buffer.from(n.data)), s).toBe(0);
          if (n.data.length < 100_000)
            expect(Buffer.compare(await dfs.cat(s), Buffer.from(n.data)), s).toBe(0);
        }
        if (n.kind === "symlink") expect(await fs.readlink(s), s).toBe(n.target);
        if (n.kind === "file" || n.kind === "dir") {
          const xs = await dfs.xattrs(s);
          const got = Object.fromEntries(
            Object.entries(xs).map(([k, v]) => [k, Buffer.from(v).toString("hex")]),
          );
          expect(got, `${s} xattrs`).toEqual(Object.fromEntries(n.xattrs));
        }
        if (n.kind === "dir") await walk(n, cp);
      }
    };
    await walk(m.root, []);
  } finally {
    await dev.close();
  }
  return inlineChecked;
}

interface Config {
  name: string;
  set: keyof typeof FEATURE_SETS;
  size: string;
  inodes: number;
  /** Write/truncate sizes are multiplied by this (tiny filesystems that fill up). */
  scale: number;
  /** More mke2fs arguments. */
  extra?: string[];
  /** A backup superblock (1 KiB blocks) whose descriptors must match the primary's afterwards. */
  backupSb?: number;
  /** Where the filesystem lives; default: a bare image file opened with FileDevice. */
  container?: Container;
}
type Container =
  /** A partition of a GPT disk (found by our parser), edited through a RangeDevice. */
  | { kind: "gpt" }
  /** A qcow2 v3 overlay (our createOverlay) over a qcow2 base made by qemu-img. */
  | { kind: "qcow2"; clusterSize: number; extendedL2?: boolean };

const CONFIGS: Config[] = [
  ...(["ext2", "ext3", "ext4-csum", "ext4-nocsum", "ext4-1k", "ext4-inline"] as const).map((set) => ({
    name: set,
    set,
    size: "8M",
    inodes: 256,
    scale: 1,
  })),
  // Tiny filesystems: sequences run into ENOSPC and inode exhaustion; a refused operation must
  // leave everything as it was.
  { name: "ext4-csum (full)", set: "ext4-csum", size: "2M", inodes: 16, scale: 30 },
  { name: "ext3 (full)", set: "ext3", size: "2M", inodes: 64, scale: 40 },
  { name: "ext4-inline (full)", set: "ext4-inline", size: "2M", inodes: 48, scale: 20 },
  // meta_bg with 8 groups of 1024 blocks: descriptor copies in groups 0 and 1.
  {
    name: "ext4-metabg",
    set: "ext4-metabg",
    size: "8M",
    inodes: 256,
    scale: 1,
    extra: ["-b", "1024", "-g", "1024"],
    backupSb: 1025,
  },
  // Quota files (user, group, project) kept as e2fsck computes them: its -fn after every
  // sequence compares each id's blocks and inodes with what the files say.
  {
    name: "ext4-quota (user, group, project)",
    set: "ext4-csum",
    size: "8M",
    inodes: 256,
    scale: 1,
    extra: ["-O", "quota,project", "-E", "quotatype=usrquota:grpquota:prjquota"],
  },
  {
    name: "ext3-quota (user, group)",
    set: "ext3",
    size: "8M",
    inodes: 256,
    scale: 1,
    extra: ["-O", "quota"],
  },
  {
    name: "ext4-inline-quota (full)",
    set: "ext4-inline",
    size: "2M",
    inodes: 48,
    scale: 20,
    extra: ["-O", "quota"],
  },
];

/** The filesystem inside a container: partition of a GPT disk, or a qcow2 overlay. */
const CONTAINER_CONFIGS: Config[] = [
  {
    name: "ext4-csum (GPT partition)",
    set: "ext4-csum",
    size: "8M",
    inodes: 256,
    scale: 1,
    container: { kind: "gpt" },
  },
  {
    name: "ext4-1k (GPT partition)",
    set: "ext4-1k",
    size: "8M",
    inodes: 256,
    scale: 1,
    container: { kind: "gpt" },
  },
  // 16 KiB clusters: the first 4 KiB block written to a cluster copies the rest of it from the base.
  {
    name: "ext4-csum (qcow2 overlay, 16 KiB clusters)",
    set: "ext4-csum",
    size: "8M",
    inodes: 256,
    scale: 1,
    container: { kind: "qcow2", clusterSize: 16384 },
  },
  // Extended L2: 64 KiB clusters of 32 subclusters of 2 KiB; 1 KiB blocks half-fill a subcluster.
  {
    name: "ext4-1k (qcow2 overlay, 64 KiB clusters, extended L2)",
    set: "ext4-1k",
    size: "8M",
    inodes: 256,
    scale: 1,
    container: { kind: "qcow2", clusterSize: 65536, extendedL2: true },
  },
];

const MIB = 1024 * 1024;
/**
 * The GPT disk: the filesystem's partition starts at 3 MiB, between two partitions; the disk
 * ends 1 MiB after the last one (room for the backup GPT). Everything outside the filesystem's
 * partition is random bytes, so any stray write shows in the hashes.
 */
const GPT = { fsStart: 3 * MIB, before: 2 * MIB, after: MIB, tail: MIB };

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Where the editor runs, and what the oracles read once it closed. */
interface Placed {
  device: BlockDevice;
  /** After the editor closed: the container's own checks; returns the filesystem to check. */
  settle(): Promise<FsTarget>;
  /** Release whatever the editor does not close (also after a failure). */
  release(): Promise<void>;
}

/** A whole GPT disk (made by sfdisk) whose second partition is exactly `fsSize` bytes; random bytes elsewhere. */
async function makeGptDisk(dir: string, fsSize: number): Promise<string> {
  const disk = join(dir, "template-disk.img");
  const size = GPT.fsStart + fsSize + GPT.after + GPT.tail;
  await writeFile(disk, randomBytes(size));
  const s = (n: number) => n / 512;
  const script = [
    "label: gpt",
    "unit: sectors",
    `start=${s(GPT.fsStart - GPT.before)}, size=${s(GPT.before)}, name=before`,
    `start=${s(GPT.fsStart)}, size=${s(fsSize)}, name=rootfs`,
    `start=${s(GPT.fsStart + fsSize)}, size=${s(GPT.after)}, name=after`,
    "",
  ].join("\n");
  await runToolOk("sfdisk", ["-q", "--no-reread", "--no-tell-kernel", disk], { input: script });
  return disk;
}

async function place(
  cfg: Config,
  dir: string,
  name: string,
  template: () => Promise<string>,
): Promise<Placed> {
  const mkfsArgs = [...FEATURE_SETS[cfg.set], ...(cfg.extra ?? []), "-N", String(cfg.inodes)];
  const fsImage = await makeImage(dir, name, mkfsArgs, cfg.size);
  const container = cfg.container;
  if (!container) {
    const device = await FileDevice.open(fsImage);
    return { device, settle: async () => fsImage, release: async () => {} };
  }
  if (container.kind === "gpt") {
    const disk = join(dir, `${name}-disk.img`);
    await copyFile(await template(), disk);
    const fsBytes = await readFile(fsImage);
    const parent = await FileDevice.open(disk);
    await parent.write(GPT.fsStart, fsBytes);
    await parent.flush();
    // The partition as our parser finds it, checked against the layout given to sfdisk.
    const table = await readPartitionTable(parent);
    expect(table?.type).toBe("gpt");
    expect(table?.warnings).toEqual([]);
    const part = table?.partitions.find((p) => p.name === "rootfs");
    expect(part && { start: part.start, size: part.size }).toEqual({
      start: GPT.fsStart,
      size: fsBytes.length,
    });
    if (!part) throw new Error("unreachable");
    const original = await readFile(disk);
    const end = part.start + part.size;
    const outside = (b: Buffer) => [sha256(b.subarray(0, part.start)), sha256(b.subarray(end))];
    const want = outside(original);
    let released = false;
    const release = async () => {
      if (!released) await parent.close();
      released = true;
    };
    return {
      device: new RangeDevice(parent, part.start, part.size),
      settle: async () => {
        await release();
        // Not one byte outside the partition changed (the GPT, both neighbours, the gaps).
        expect(outside(await readFile(disk)), "bytes outside the partition").toEqual(want);
        return { path: disk, offset: part.start };
      },
      release,
    };
  }
  const base = join(dir, `${name}-base.qcow2`);
  await qemuImg(["convert", "-f", "raw", "-O", "qcow2", fsImage, base]);
  const baseHash = sha256(await readFile(base));
  const overlay = join(dir, `${name}-overlay.qcow2`);
  const device = await createOverlay(overlay, base, {
    backingFormat: "qcow2",
    version: 3,
    clusterSize: container.clusterSize,
    extendedL2: container.extendedL2,
  });
  return {
    device,
    settle: async () => {
      const chk = await qemuImgCheck(overlay);
      expect(chk.json, "qemu-img check of the overlay").toMatchObject({ "check-errors": 0 });
      expect({ clean: chk.clean, leaks: chk.leaks, corruptions: chk.corruptions }).toEqual({
        clean: true,
        leaks: 0,
        corruptions: 0,
      });
      expect(await qemuImgInfo(overlay)).toMatchObject({
        format: "qcow2",
        "cluster-size": container.clusterSize,
        "backing-filename": base,
      });
      expect(sha256(await readFile(base)), "the base image is untouched").toBe(baseHash);
      const flat = join(dir, `${name}-flat.img`);
      await qemuImg(["convert", "-O", "raw", overlay, flat]);
      return flat;
    },
    release: async () => {},
  };
}

function propertyTest(cfg: Config): () => Promise<void> {
  return async () => {
    const dir = await tempDir("edp-");
    let run = 0;
    let inlineSeen = 0;
    // The GPT disk without a filesystem, made once per configuration.
    let templateDisk: Promise<string> | undefined;
    const template = () => {
      if (!/^\d+M$/.test(cfg.size)) throw new Error(`size ${cfg.size}: whole MiB expected`);
      templateDisk ??= makeGptDisk(dir, Number.parseInt(cfg.size, 10) * MIB);
      return templateDisk;
    };
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 10, maxLength: 50 }), async (ops) => {
        const placed = await place(cfg, dir, `${cfg.set}-${run++}`, template);
        const m = new Model();
        let ed: Ext4Editor;
        try {
          ed = await Ext4Editor.open(placed.device, { timestamp: 1_700_000_000 });
        } catch (e) {
          await placed.device.close();
          await placed.release();
          throw e;
        }
        // lost+found exists on every fresh image: put it in the model.
        m.root.children.set("lost+found", newNode("dir", 0o700));
        try {
          const scaled = ops.map((o): Op => {
            if (o.op === "writeFile") return { ...o, size: o.size * cfg.scale };
            if (o.op === "truncate") return { ...o, len: o.len * cfg.scale };
            if (o.op === "writeAt") return { ...o, size: o.size * cfg.scale };
            return o;
          });
          for (const o of [...PRELUDE, ...scaled]) {
            const snapshot = structuredClone(m.root);
            const want = applyModel(m, o);
            if (want === "skip") continue;
            let ok = true;
            let err: unknown;
            try {
              await runOp(ed, o);
            } catch (e) {
              ok = false;
              err = e;
            }
            if (err instanceof Ext4NoSpaceError) {
              // Out of space: refused as a whole.
              m.root = snapshot;
              continue;
            }
            expect(ok, `${JSON.stringify(o)} → ${String(err)}`).toBe(want);
          }
        } finally {
          try {
            await ed.close();
          } finally {
            await placed.release();
          }
        }
        const target = await placed.settle();
        inlineSeen += await check(target, m, cfg.set === "ext4-inline");
        if (cfg.backupSb) {
          if (typeof target !== "string") throw new Error("backupSb needs a bare image");
          const counts = async (args: string[]) =>
            (await runToolOk("debugfs", ["-c", ...args, "-R", "stats", target]))
              .toString("utf8")
              .split("\n")
              .filter((l) => /free blocks?, \d+ free inodes?/.test(l))
              .map((l) => l.replace(/, \d+ unused inodes?/, ""));
          expect(await counts(["-s", String(cfg.backupSb), "-b", "1024"])).toEqual(await counts([]));
        }
      }),
      { numRuns: RUNS, endOnFailure: !process.env.IMGPATCH_FC_SHRINK, ...REPLAY },
    );
    // The inline configuration really made inline inodes.
    if (cfg.set === "ext4-inline") expect(inlineSeen).toBeGreaterThan(0);
  };
}

const E2FS_TOOLS = ["mke2fs", "e2fsck", "debugfs"];
describeWithTools(E2FS_TOOLS, "ext4 editor: random operation sequences vs a model", () => {
  for (const cfg of CONFIGS) it(`${cfg.name}`, propertyTest(cfg), 120_000);
});
describeWithTools(
  [...E2FS_TOOLS, "sfdisk", "qemu-img"],
  "ext4 editor: random operation sequences vs a model, in a partition or a qcow2 overlay",
  () => {
    for (const cfg of CONTAINER_CONFIGS) it(`${cfg.name}`, propertyTest(cfg), 120_000);
  },
);

async function runOp(ed: Ext4Editor, o: Op): Promise<void> {
  const p = str(o.p);
  switch (o.op) {
    case "writeFile": {
      const data = bytes(o.size, o.byte);
      if (o.chunk === undefined) return ed.writeFile(p, data, { mode: o.mode });
      const size = o.chunk;
      async function* chunks() {
        for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
      }
      return ed.writeFile(p, chunks(), { mode: o.mode });
    }
    case "writeAt":
      return ed.writeAt(p, o.offset, bytes(o.size, o.byte));
    case "mkdir":
      await ed.mkdir(p, { mode: o.mode });
      return;
    case "symlink":
      return ed.symlink(o.target, p);
    case "link":
      return ed.link(p, str(o.q));
    case "unlink":
      return ed.unlink(p);
    case "rmdir":
      return ed.rmdir(p);
    case "rm":
      return ed.rm(p, { recursive: true });
    case "rename":
      return ed.rename(p, str(o.q));
    case "chmod":
      return ed.chmod(p, o.mode);
    case "chown":
      return ed.chown(p, o.uid, o.gid);
    case "truncate":
      return ed.truncate(p, o.len);
    case "setxattr":
      return ed.setxattr(p, o.name, bytes(o.size, o.size & 0xff));
    case "removexattr":
      return ed.removexattr(p, o.name);
    case "mknod":
      return ed.mknod(p, "fifo", 0o644);
  }
}
