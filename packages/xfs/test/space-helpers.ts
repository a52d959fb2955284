// Test helpers of the space engine: images made by mkfs.xfs (with empty "holder" files from a
// protofile), xfs_repair -n / xfs_db as oracles, and holder files whose data fork is rewritten to
// own the extents a test allocated (so xfs_repair checks them against bnobt/cntbt/rmapbt).
import { execFileSync, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { type SpaceGeometry, spaceGeometry } from "../src/ag.js";
import { Allocator, type SpaceContext } from "../src/alloc.js";
import { BufCache, stampCrc } from "../src/buf.js";
import { setBe16, setBe32, setBe64 } from "../src/bytes.js";
import { stampLsn } from "../src/editor.js";
import { packExtent } from "../src/fork.js";
import { InodeAllocator } from "../src/ialloc.js";
import { readLogState } from "../src/log.js";
import { decodeSuperblock, XfsGeometry } from "../src/sb.js";

export const XFS_TOOLS = ["mkfs.xfs", "xfs_repair", "xfs_db"];

/** Feature sets the engine is tested on (mkfs.xfs arguments). */
export const FEATURE_SETS: Record<string, string[]> = {
  v4: ["-m", "crc=0,finobt=0,reflink=0,rmapbt=0,bigtime=0,inobtcount=0", "-i", "sparse=0"],
  v5: [],
  "v5-rmap-reflink": ["-m", "rmapbt=1,reflink=1"],
  "v5-1k": ["-b", "size=1024", "-m", "rmapbt=1"],
  "v4-512-sector": [
    "-m",
    "crc=0,finobt=0,reflink=0,rmapbt=0,bigtime=0,inobtcount=0",
    "-i",
    "sparse=0",
    "-s",
    "size=512",
  ],
};

/** A filesystem image made by mkfs.xfs, with `files` empty regular files f0..f{n-1} in the root. */
export function mkfsImage(dir: string, name: string, args: string[], sizeMiB: number, files = 0): string {
  const p = join(dir, name);
  writeFileSync(p, "");
  execFileSync("truncate", ["-s", `${sizeMiB}M`, p]);
  const extra: string[] = [];
  if (files > 0) {
    const empty = join(dir, "empty");
    writeFileSync(empty, "");
    const lines = ["/dev/null", "0 0", "d--755 0 0"];
    for (let i = 0; i < files; i++) lines.push(`f${i} ---644 0 0 ${empty}`);
    lines.push("$", "");
    const proto = join(dir, `${name}.proto`);
    writeFileSync(proto, lines.join("\n"));
    extra.push("-p", proto);
  }
  execFileSync("mkfs.xfs", ["-q", "-f", ...args, ...extra, p], {
    // Below 300 MiB xfsprogs 6.1 wants to be told it runs under a test harness.
    env: { ...process.env, TEST_DIR: dir, TEST_DEV: p, QA_CHECK_FS: "xfs" },
  });
  return p;
}

/** xfs_repair -n: clean means exit 0 and no line reporting a problem. */
export function repairCheck(path: string): { clean: boolean; output: string } {
  const r = spawnSync("xfs_repair", ["-n", "-f", path], { encoding: "utf8" });
  const output = `${r.stdout}\n${r.stderr}`;
  const findings = output
    .split("\n")
    .filter(
      (l) =>
        l.trim() &&
        !/^(Phase \d|\s+- |No modify flag|Cannot get host|Repair may fail|the image and the host)/.test(l),
    );
  return {
    clean: r.status === 0 && findings.length === 0,
    output: r.status === 0 ? findings.join("\n") : output,
  };
}

/**
 * xfs_repair -n and xfs_db `check` together: repair -n skips the free-space rebuild (phase 5), so
 * on filesystems without rmapbt it cannot see a leaked block; `check` walks every block and does.
 */
export function fsCheck(path: string): { clean: boolean; output: string } {
  const r = repairCheck(path);
  const c = spawnSync("xfs_db", ["-r", "-f", "-c", "check", path], { encoding: "utf8" });
  const dbOut = `${c.stdout}${c.stderr}`.trim();
  const clean = r.clean && c.status === 0 && dbOut === "";
  return { clean, output: [r.output, dbOut].filter(Boolean).join("\n") };
}

export function xfsDb(path: string, cmds: string[]): string {
  const args = ["-r", "-f"];
  for (const c of cmds) args.push("-c", c);
  args.push(path);
  return execFileSync("xfs_db", args, { encoding: "utf8" });
}

/** `field = value` lines of xfs_db output as a map. */
export function dbFields(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split("\n")) {
    const i = line.indexOf(" = ");
    if (i > 0) m.set(line.slice(0, i).trim(), line.slice(i + 3).trim());
  }
  return m;
}

/** Name → inode number of the root directory's entries (xfs_db ls). */
export function rootEntries(path: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of xfsDb(path, ["path /", "ls"]).split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 6) m.set(f[5], Number(f[1]));
  }
  return m;
}

export interface SpaceHarness {
  dev: FileDevice;
  xgeo: XfsGeometry;
  geo: SpaceGeometry;
  ctx: SpaceContext;
  alloc: Allocator;
  inodes: InodeAllocator;
  close(): Promise<void>;
}

/** Open an image for the space engine, stamping LSNs at the log's last record (log.ts). */
export async function openSpace(path: string): Promise<SpaceHarness> {
  const dev = await FileDevice.open(path, { readOnly: false });
  const sbBytes = await dev.read(0, 4096);
  const xgeo = new XfsGeometry(decodeSuperblock(sbBytes));
  const log = await readLogState(xgeo, (o, n) => dev.read(o, n));
  if (log.state !== "clean") throw new Error(`log is ${log.state}`);
  const geo = spaceGeometry(xgeo, path);
  const ctx: SpaceContext = {
    geo,
    bufs: new BufCache(dev, { crc: geo.crc, lsn: stampLsn(log), maxCleanBytes: 1 << 20 }),
    delta: { fdblocks: 0, icount: 0, ifree: 0 },
  };
  const alloc = new Allocator(ctx);
  return { dev, xgeo, geo, ctx, alloc, inodes: new InodeAllocator(alloc), close: () => dev.close() };
}

export interface HolderExtent {
  /** File offset (blocks). */
  off: number;
  fsb: number;
  len: number;
}

/**
 * Rewrite a holder file's inode so that its data fork (extents format) maps `extents`: nextents,
 * nblocks, size and the v3 CRC follow. The fork must fit in the inode (tests keep to that).
 */
export async function writeHolder(h: SpaceHarness, ino: number, extents: HolderExtent[]): Promise<void> {
  const g = h.xgeo;
  const off = g.inoToByte(ino);
  const b = await h.dev.read(off, g.inodeSize);
  const core = g.v5 ? 176 : 100;
  const room = Math.floor((g.inodeSize - core) / 16);
  if (extents.length > room) throw new Error(`holder ${ino}: ${extents.length} extents exceed ${room}`);
  const sorted = [...extents].sort((a, b) => a.off - b.off);
  b[5] = 2; // extents format
  let blocks = 0;
  let end = 0;
  b.fill(0, core);
  sorted.forEach((e, i) => {
    packExtent(b, core + 16 * i, { startoff: e.off, startblock: e.fsb, blockcount: e.len, unwritten: false });
    blocks += e.len;
    end = Math.max(end, e.off + e.len);
  });
  setBe64(b, 56, end * g.blockSize);
  setBe64(b, 64, blocks);
  setBe32(b, 76, sorted.length);
  if (g.v5) stampCrc(b, 100);
  await h.dev.write(off, b);
}

/** Give an allocated inode a valid in-use core: an empty regular file with one link. */
export async function writeInUseInode(h: SpaceHarness, ino: number): Promise<void> {
  const g = h.xgeo;
  const off = g.inoToByte(ino);
  const b = await h.dev.read(off, g.inodeSize);
  setBe16(b, 2, 0o100644);
  b[5] = 2; // data fork: extents (none)
  b[83] = 2; // attr fork format: extents
  setBe32(b, 16, 1);
  if (g.v5) stampCrc(b, 100);
  await h.dev.write(off, b);
}

/** Give an inode back a free core (mode 0), as the editor does before freeing it. */
export async function writeFreeInode(h: SpaceHarness, ino: number): Promise<void> {
  const g = h.xgeo;
  const off = g.inoToByte(ino);
  const b = await h.dev.read(off, g.inodeSize);
  setBe16(b, 2, 0);
  setBe32(b, 16, 0);
  if (g.v5) stampCrc(b, 100);
  await h.dev.write(off, b);
}

/**
 * xfs_repair -n and xfs_db check, where the only findings allowed are that exactly the inodes of
 * `inUse` are disconnected (in use, valid, but in no directory): this proves the inode btrees,
 * chunks, counters and rmap records agree about them. Returns the unexpected lines.
 */
export function unexpectedFindings(path: string, inUse: Iterable<number>): string[] {
  const { output } = fsCheck(path);
  const want = new Set(inUse);
  const seen = new Set<number>();
  const bad: string[] = [];
  for (const line of output.split("\n")) {
    if (
      !line.trim() ||
      /^(Phase \d|\s+- |No modify flag|Cannot get host|Repair may fail|the image and the host)/.test(line)
    )
      continue;
    const m = /^disconnected inode (\d+), (would move to lost\+found|nlink 1)$/.exec(line.trim());
    if (m && want.has(Number(m[1]))) {
      seen.add(Number(m[1]));
      continue;
    }
    bad.push(line);
  }
  for (const ino of want) if (!seen.has(ino)) bad.push(`inode ${ino} not reported as in use`);
  return bad;
}
