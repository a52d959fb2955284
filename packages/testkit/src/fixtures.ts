import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createGunzip, gunzipSync } from "node:zlib";
import type { FileType } from "./e2fs.js";

/** `test-fixtures/` at the repository root (this file is packages/testkit/{src,dist}/fixtures.*). */
export const FIXTURES_DIR = fileURLToPath(new URL("../../../test-fixtures/", import.meta.url));
/** Committed outputs. */
export const FIXTURES_OUT = join(FIXTURES_DIR, "out");
/** Decompressed copies (gitignored). */
export const FIXTURES_WORK = join(FIXTURES_DIR, ".work");

/** One file of a source tree, as the host saw it (lstat, getfattr) before mke2fs -d copied it. */
export interface ManifestEntry {
  /** Absolute path inside the filesystem, "/" for the root. */
  path: string;
  type: FileType;
  /** Full st_mode (type bits included). */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files: byte size; symlinks: target length; others 0 (directory sizes are fs-specific). */
  size: number;
  /** Regular files: hex sha256 of the contents. */
  sha256?: string;
  /** Symlinks: the target. */
  target?: string;
  /** Extended attributes, values base64. */
  xattrs: Record<string, string>;
  /** Modification time. */
  mtime: { sec: number; nsec: number };
  nlink: number;
  /** Entries with the same (non-null) group are hard links to one inode. */
  hardlinkGroup?: number;
  /** Device nodes. */
  rdev?: { major: number; minor: number };
  /** Regular files: allocated bytes on the host (st_blocks*512), to tell sparse files apart. */
  allocated?: number;
}

export interface Manifest {
  /** Name of the source tree. */
  tree: string;
  entries: ManifestEntry[];
}

export interface FixturePartition {
  /** Partition number as sfdisk numbers it (logical MBR partitions start at 5). */
  number: number;
  /** Byte offset and size of the partition in the disk. */
  offset: number;
  size: number;
  /** MBR type id as sfdisk prints it ("83", "5", "c") or GPT type GUID (upper case). */
  type: string;
  /** GPT partition name and unique GUID. */
  name?: string;
  uuid?: string;
  /** What it holds: "ext4" | "ext2" | "vfat" | "swap" | "bios-boot" | "extended". */
  content: string;
  /** Manifest of the filesystem's contents (file under out/manifests/), when made from a tree. */
  manifest?: string;
  /** ext filesystems, from dumpe2fs. */
  features?: string[];
  blockSize?: number;
  inodeSize?: number;
  fsUuid?: string;
}

export interface FixtureQcow2 {
  /** "0.10" (version 2) or "1.1" (version 3). */
  compat: string;
  clusterSize: number;
  refcountBits: number;
  extendedL2: boolean;
  /** Data clusters written compressed (qemu-img convert -c). */
  compressed: boolean;
  /** Zero clusters/subclusters written with qemu-io write -z. */
  zeroClusters: boolean;
}

export interface FixtureInfo {
  /** Key in the index, also the decompressed file's name. */
  name: string;
  /** Committed file under test-fixtures/out (`<name>.gz`). */
  file: string;
  /** Container format as qemu-img names it. */
  format: "raw" | "qcow2";
  /** What the guest sees: "ext2" | "ext3" | "ext4" | "gpt" | "mbr" | "pattern". */
  content: string;
  description: string;
  /** Guest-visible size in bytes. */
  virtualSize: number;
  /** Bytes of the decompressed file. */
  size: number;
  /** sha256 of the decompressed file. */
  sha256: string;
  /** sha256 of the guest-visible content (qemu-img convert -O raw), what a reader must return. */
  contentSha256: string;
  /** Bare filesystems: offset 0, features, geometry and the manifest of its contents. */
  fsOffset?: number;
  features?: string[];
  blockSize?: number;
  inodeSize?: number;
  fsUuid?: string;
  /** Manifest file name under out/manifests/ (load with `fixtureManifest`). */
  manifest?: string;
  /** Whole disks. */
  partitions?: FixturePartition[];
  /** `sfdisk --json` output (file under out/), for whole disks with 512-byte sectors. */
  sfdiskJson?: string;
  /** fdisk's sfdisk-format dump (file under out/), for 4 KiB-sector disks (`sector-size: 4096`). */
  sfdiskScript?: string;
  /** Logical sector size of a whole disk (512 or 4096). */
  sectorSize?: number;
  qcow2?: FixtureQcow2;
  /** Backing file as recorded in the overlay (relative) and the fixture providing it. */
  backing?: { recorded: string; fixture: string };
  /** Fixture whose guest-visible content equals this one's. */
  sameContentAs?: string;
  /** qcow2: what `qemu-img check` reported when the fixture was made. */
  qemuCheck?: { exitCode: number; leaks: number; corruptions: number };
  /** Deliberately damaged (hand-corrupted qcow2): qemuCheck is not clean. */
  broken?: boolean;
  /** qcow2 internal snapshots, with the sha256 of each snapshot's guest-visible content. */
  snapshots?: { id: string; name: string; contentSha256: string }[];
  /** Files added to the filesystem after mke2fs, outside the manifest's tree (ext4-overlay). */
  extraFiles?: { path: string; uid: number; gid: number; mode: number; text: string }[];
  /** [offset, length] ranges zeroed by qemu-io write -z (pattern-zero). */
  zeroRanges?: [number, number][];
  /** Tool options used, for the record. */
  generatedWith?: string;
}

export interface FixtureIndex {
  version: number;
  fixtures: Record<string, FixtureInfo>;
}

let indexCache: FixtureIndex | undefined;
let indexHash: string | undefined;

/** The parsed `test-fixtures/out/fixtures.json`. */
export function fixturesIndex(): FixtureIndex {
  if (!indexCache) {
    const text = readFileSync(join(FIXTURES_OUT, "fixtures.json"));
    indexHash = createHash("sha256").update(text).digest("hex").slice(0, 16);
    indexCache = JSON.parse(text.toString("utf8")) as FixtureIndex;
  }
  return indexCache;
}

/** Index entry of one fixture (throws on an unknown name, listing the known ones). */
export function fixtureInfo(name: string): FixtureInfo {
  const info = fixturesIndex().fixtures[name];
  if (!info) {
    throw new Error(`unknown fixture '${name}'; known: ${Object.keys(fixturesIndex().fixtures).join(", ")}`);
  }
  return info;
}

/** Names of every fixture in the index. */
export function fixtureNames(): string[] {
  return Object.keys(fixturesIndex().fixtures);
}

const manifestCache = new Map<string, Manifest>();

/** A source-tree manifest by its file name (the `manifest` field of a fixture; gzipped JSON). */
export function fixtureManifest(manifest: string): Manifest {
  let m = manifestCache.get(manifest);
  if (!m) {
    let data = readFileSync(join(FIXTURES_OUT, "manifests", manifest));
    if (manifest.endsWith(".gz")) data = gunzipSync(data);
    m = JSON.parse(data.toString("utf8")) as Manifest;
    manifestCache.set(manifest, m);
  }
  return m;
}

/** Path of a committed, uncompressed file under test-fixtures/out (e.g. an sfdisk --json dump). */
export function fixtureFile(relPath: string): string {
  return join(FIXTURES_OUT, relPath);
}

/** Bump when the way cached copies are written changes, so stale copies are never reused. */
const CACHE_VERSION = "v2";
const SPARSE_BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(SPARSE_BLOCK);

/** Gunzip `src` to `dst`, leaving all-zero 4 KiB blocks as holes (images are mostly zeros). */
async function gunzipSparse(src: string, dst: string): Promise<void> {
  const fh = await open(dst, "w");
  try {
    let pos = 0;
    let pending = Buffer.alloc(0);
    // Write each run of non-zero blocks with one call; skip zero blocks.
    const flush = async (buf: Buffer) => {
      let runStart = -1;
      for (let off = 0; off < buf.length; off += SPARSE_BLOCK) {
        const end = Math.min(off + SPARSE_BLOCK, buf.length);
        const zero = buf.subarray(off, end).equals(ZERO_BLOCK.subarray(0, end - off));
        if (!zero && runStart < 0) runStart = off;
        if (zero && runStart >= 0) {
          await fh.write(buf, runStart, off - runStart, pos + runStart);
          runStart = -1;
        }
      }
      if (runStart >= 0) await fh.write(buf, runStart, buf.length - runStart, pos + runStart);
      pos += buf.length;
    };
    for await (const chunk of createReadStream(src).pipe(createGunzip({ chunkSize: 1 << 20 }))) {
      const data: Buffer = pending.length ? Buffer.concat([pending, chunk as Buffer]) : (chunk as Buffer);
      const whole = data.length - (data.length % SPARSE_BLOCK);
      await flush(data.subarray(0, whole));
      pending = Buffer.from(data.subarray(whole));
    }
    await flush(pending);
    await fh.truncate(pos);
  } finally {
    await fh.close();
  }
}

async function materialise(name: string, dir: string): Promise<string> {
  const info = fixtureInfo(name);
  const dst = join(dir, name);
  if (existsSync(dst) && (await stat(dst)).size === info.size) return dst;
  const src = join(FIXTURES_OUT, info.file);
  // Test files run in parallel processes: decompress to a private name, then rename atomically.
  const tmp = `${dst}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    if (info.file.endsWith(".gz")) await gunzipSparse(src, tmp);
    else {
      await copyFile(src, tmp);
    }
    await rename(tmp, dst);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return dst;
}

/**
 * Path of a decompressed, ready-to-open copy of a fixture, cached in test-fixtures/.work/ (shared
 * by all tests — treat it as read-only; use `fixtureCopy` to modify). A backing file an overlay
 * names is decompressed next to it, so the relative path resolves.
 */
export async function fixture(name: string): Promise<string> {
  fixturesIndex();
  // Keyed by the index (new fixtures → new directory) and by the cache layout version.
  const dir = join(FIXTURES_WORK, `${CACHE_VERSION}-${indexHash!}`);
  if ((await mkdir(dir, { recursive: true })) !== undefined) await removeStaleCaches(dir);
  const info = fixtureInfo(name);
  if (info.backing) await fixture(info.backing.fixture);
  return materialise(name, dir);
}

/**
 * The filesystem of a fixture as an e2fsprogs target: a bare filesystem image, or partition
 * `partition` (sfdisk numbering) of a raw whole-disk fixture, reached at its byte offset.
 */
export async function fixtureFs(name: string, partition?: number): Promise<{ path: string; offset: number }> {
  const info = fixtureInfo(name);
  const path = await fixture(name);
  if (partition === undefined) {
    if (info.fsOffset === undefined)
      throw new Error(`fixture ${name} is not a bare filesystem; name a partition`);
    return { path, offset: info.fsOffset };
  }
  const p = info.partitions?.find((x) => x.number === partition);
  if (!p) throw new Error(`fixture ${name} has no partition ${partition}`);
  return { path, offset: p.offset };
}

/** Drop decompressed copies of older fixture sets (a new index means a new directory). */
async function removeStaleCaches(current: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(FIXTURES_WORK);
  } catch {
    return;
  }
  for (const n of names) {
    const p = join(FIXTURES_WORK, n);
    // "gen" is generate.sh's scratch space, "built" the cache of built.ts (keyed on its own).
    if (p !== current && n !== "gen" && n !== "built")
      await rm(p, { recursive: true, force: true }).catch(() => {});
  }
}

/** A private, writable copy of a fixture (and of its backing file) in `dir`. */
export async function fixtureCopy(name: string, dir: string): Promise<string> {
  const info = fixtureInfo(name);
  if (info.backing) await fixtureCopy(info.backing.fixture, dir);
  await mkdir(dirname(join(dir, name)), { recursive: true });
  return materialise(name, dir);
}
