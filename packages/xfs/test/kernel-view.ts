/**
 * Whole-tree views for comparison: the kernel's (through a mounted filesystem: lstat with
 * nanoseconds, content sha256, link targets, every xattr via getfattr) and XfsFs's.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { XfsFs } from "../src/index.js";

const run = promisify(execFile);

export interface TreeEntry {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  blocks: number;
  rdev: number;
  atime: string;
  mtime: string;
  ctime: string;
  target?: string;
  sha256?: string;
  xattrs: Record<string, string>;
}

const S_IFMT = 0o170000;

function sha(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** Parses `getfattr -R -d -m - -e hex -h --absolute-names` output: path → name → hex. */
function parseGetfattr(text: string, root: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("# file: ")) {
      const p = line.slice(8);
      const rel = p === root ? "/" : p.slice(root.length);
      cur = {};
      out.set(rel, cur);
    } else if (cur && line.includes("=")) {
      const i = line.indexOf("=");
      const v = line.slice(i + 1);
      cur[line.slice(0, i)] = v.startsWith("0x")
        ? v.slice(2)
        : Buffer.from(v.replace(/^"|"$/g, "")).toString("hex");
    }
  }
  return out;
}

export async function kernelTree(mnt: string): Promise<Map<string, TreeEntry>> {
  const { stdout } = await run(
    "getfattr",
    ["-R", "-d", "-m", "-", "-e", "hex", "-h", "--absolute-names", mnt],
    {
      maxBuffer: 1 << 28,
    },
  );
  const xattrs = parseGetfattr(stdout, mnt);
  const out = new Map<string, TreeEntry>();
  const visit = async (rel: string): Promise<void> => {
    const abs = rel === "/" ? mnt : join(mnt, rel);
    const st = await lstat(abs, { bigint: true });
    const mode = Number(st.mode);
    const e: TreeEntry = {
      ino: Number(st.ino),
      mode,
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: Number(st.size),
      nlink: Number(st.nlink),
      blocks: Number(st.blocks),
      rdev: Number(st.rdev),
      atime: st.atimeNs.toString(),
      mtime: st.mtimeNs.toString(),
      ctime: st.ctimeNs.toString(),
      xattrs: xattrs.get(rel) ?? {},
    };
    const t = mode & S_IFMT;
    if (t === 0o120000) e.target = await readlink(abs);
    if (t === 0o100000) e.sha256 = sha(await readFile(abs));
    out.set(rel, e);
    if (t === 0o040000) {
      for (const name of await readdir(abs)) await visit(rel === "/" ? `/${name}` : `${rel}/${name}`);
    }
  };
  await visit("/");
  return out;
}

export async function readerTree(fs: XfsFs): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  for await (const w of fs.walk("/")) {
    const s = w.stats;
    const x: Record<string, string> = {};
    for (const [k, v] of await fs.inodeXattrs(w.inode)) x[k] = Buffer.from(v).toString("hex");
    const e: TreeEntry = {
      ino: w.ino,
      mode: s.mode,
      uid: s.uid,
      gid: s.gid,
      size: s.size,
      nlink: s.nlink,
      blocks: s.blocks,
      rdev: s.rdev,
      atime: s.atimeNs.toString(),
      mtime: s.mtimeNs.toString(),
      ctime: s.ctimeNs.toString(),
      xattrs: x,
    };
    if (s.isSymbolicLink()) e.target = Buffer.from(await fs.readSymlinkInode(w.inode)).toString("utf8");
    if (s.isFile()) e.sha256 = sha(await fs.readFileInode(w.inode));
    out.set(w.path, e);
  }
  return out;
}

/** Differences between two trees, as readable lines (empty when equal). */
export function diffTrees(kernel: Map<string, TreeEntry>, ours: Map<string, TreeEntry>): string[] {
  const diffs: string[] = [];
  for (const [p, k] of kernel) {
    const o = ours.get(p);
    if (!o) {
      diffs.push(`missing in reader: ${p}`);
      continue;
    }
    for (const f of Object.keys(k) as (keyof TreeEntry)[]) {
      const a = JSON.stringify(f === "xattrs" ? sorted(k.xattrs) : k[f]);
      const b = JSON.stringify(f === "xattrs" ? sorted(o.xattrs) : o[f]);
      if (a !== b) diffs.push(`${p}: ${f} kernel=${a.slice(0, 200)} reader=${b.slice(0, 200)}`);
    }
  }
  for (const p of ours.keys()) if (!kernel.has(p)) diffs.push(`extra in reader: ${p}`);
  return diffs;
}

function sorted(x: Record<string, string>): [string, string][] {
  return Object.entries(x).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}
