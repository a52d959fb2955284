/**
 * The editor's shared state, like libext2fs's `ext2_filsys` handle: every editor module is a set
 * of plain functions taking it first. Also the editor's clock, inode generations and name keys.
 */

import { randomBytes } from "node:crypto";
import { Allocator } from "./alloc.js";
import { BlockStore } from "./block-store.js";
import { encodeName } from "./bytes.js";
import { crc32cU32 } from "./crc32c.js";
import type { DirState } from "./dir-state.js";
import type { Ext4EditorOptions } from "./editor.js";
import { INCOMPAT, RO_COMPAT } from "./features.js";
import type { Ext4Fs } from "./fs.js";
import type { GroupDesc } from "./group-desc.js";
import type { Inode, Timestamp } from "./inode.js";
import { hasIncompat, hasRoCompat, parseSuperblock, type Superblock } from "./superblock.js";

/** The editor's state shared by its modules (created once per Ext4Editor). */
export class EditContext {
  readonly reader: Ext4Fs;
  readonly store: BlockStore;
  readonly sb: Superblock;
  readonly groups: GroupDesc[];
  readonly alloc: Allocator;
  readonly seed: number;
  readonly csum: boolean;
  readonly ft: boolean;
  readonly extents: boolean;
  /** New small files, directories and symlinks are stored in the inode (inline_data). */
  readonly inlineData: boolean;
  readonly bs: number;
  readonly fixedTime?: Timestamp;
  genState: number;
  readonly dirs = new Map<number, DirState>();
  readonly inodes = new Map<number, Inode>();
  readonly dirtyInodes = new Set<number>();
  /** Inode numbers of directories by the parent path they were resolved from (see resolveParent). */
  readonly parentDirs = new Map<string, number>();
  readonly durable: boolean;
  /** inode_size-byte pieces of 1 MiB slabs (one small off-heap buffer per inode costs). */
  inodeSlab = new Uint8Array(0);
  inodeSlabPos = 0;
  readerStale = false;
  /** s_kbytes_written when opened (0: the filesystem does not count, leave it so). */
  readonly kbytesBase: number;
  /** Device bytes written as of the last superblock stamp. */
  stampedBytes = 0;
  /** Something was written since the quota files were last brought up to date (see sync). */
  quotaStale = false;

  constructor(reader: Ext4Fs, options: Ext4EditorOptions) {
    this.reader = reader;
    this.sb = parseSuperblock(reader.sb.raw);
    // Private copies (the reader's stay as read): plain number fields and the raw bytes.
    this.groups = reader.groups.map((g) => ({ ...g, raw: g.raw.slice() }));
    this.bs = this.sb.blockSize;
    this.store = new BlockStore(reader.device, this.bs);
    this.seed = reader.seed;
    this.alloc = new Allocator(this.sb, this.groups, this.store, this.seed);
    this.csum = hasRoCompat(this.sb, RO_COMPAT.metadata_csum);
    this.ft = hasIncompat(this.sb, INCOMPAT.filetype);
    this.extents = hasIncompat(this.sb, INCOMPAT.extent);
    this.inlineData = hasIncompat(this.sb, INCOMPAT.inline_data) && this.sb.inodeSize > 128;
    this.durable = options.durable ?? true;
    this.kbytesBase = this.sb.kbytesWritten;
    let t = options.timestamp;
    if (t === undefined && !options.ignoreSourceDateEpoch && process.env.SOURCE_DATE_EPOCH) {
      const n = Number(process.env.SOURCE_DATE_EPOCH);
      if (Number.isFinite(n)) t = n;
    }
    if (t !== undefined) {
      this.fixedTime = toTimestamp(t);
      this.genState = crc32cU32(this.seed, this.fixedTime.sec >>> 0);
    } else this.genState = randomBytes(4).readUInt32LE(0);
  }
}

/** The editor's clock: the fixed time (timestamp / SOURCE_DATE_EPOCH) or now. */
export function timeNow(ctx: EditContext): Timestamp {
  if (ctx.fixedTime) return { ...ctx.fixedTime };
  return toTimestamp(new Date());
}

/** A new inode generation: a deterministic sequence under a fixed time, else random. */
export function nextGeneration(ctx: EditContext): number {
  if (ctx.fixedTime) {
    ctx.genState = crc32cU32(ctx.genState, 0x9e3779b9);
    return ctx.genState >>> 0;
  }
  return randomBytes(4).readUInt32LE(0);
}

export function toTimestamp(t: Date | number): Timestamp {
  if (t instanceof Date) {
    const ms = t.getTime();
    const sec = Math.floor(ms / 1000);
    return { sec, nsec: (ms - sec * 1000) * 1e6 };
  }
  const sec = Math.floor(t);
  return { sec, nsec: Math.round((t - sec) * 1e9) % 1e9 };
}

/** Map key of a name's bytes (the last one is remembered: one operation asks several times). */
let lastKeyOf: Uint8Array | undefined;
let lastKey = "";
/** A path component's bytes: ASCII directly, anything else as UTF-8. */
export function nameBytes(s: string): Uint8Array {
  const n = s.length;
  if (n > 255) return encodeName(s);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return encodeName(s);
    out[i] = c;
  }
  return out;
}

export const rememberKey = (b: Uint8Array, k: string) => {
  lastKeyOf = b;
  lastKey = k;
};
export const key = (b: Uint8Array) => {
  if (b !== lastKeyOf) {
    lastKey = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");
    lastKeyOf = b;
  }
  return lastKey;
};
