/**
 * Quota files (the `quota` feature): after edits, every quota inode named by the superblock
 * (user s_usr_quota_inum, group s_grp_quota_inum, project s_prj_quota_inum) is rewritten with
 * the usage e2fsck computes — per id, bytes of blocks (i_blocks, so data, map and xattr blocks)
 * and inodes — keeping each id's limits and grace times. e2fsck -fn compares exactly that.
 *
 * Counted inodes (as e2fsck's pass 1): in use (i_links_count > 0), the root or numbered from
 * s_first_ino on, not the project quota inode, not the orphan file, not an EA inode, and not
 * an inline-data symlink: e2fsck's pass 1 finishes those before the block check where it counts
 * usage (still so in e2fsprogs 1.47.4), so it expects neither their inode nor any block of theirs
 * in the files, though the kernel charges them. The project id is i_projid when the inode's extra
 * fields reach it, else 0.
 *
 * File format (quota v2 "vfsv1", little-endian, in 1 KiB quota blocks):
 *
 * | where | field |
 * |---|---|
 * | block 0, byte 0 | dqh_magic (user 0xd9c01f11, group 0xd9c01927, project 0xd9c03f14), dqh_version 1 |
 * | block 0, byte 8 | dqi_bgrace, dqi_igrace, dqi_flags, dqi_blocks (blocks in the file), dqi_free_blk (first free block), dqi_free_entry (first data block with a free entry) |
 * | block 1 | root of a 4-level radix tree on the id's bytes, most significant first: 256 le32 block refs per index block (0 = none); the fourth level points at data blocks |
 * | data block | header (le32 next_free, le32 prev_free, le16 entries, 6 pad) then 14 entries of 72 bytes |
 *
 * Entry (v2r1_disk_dqblk): le32 id, le32 pad, le64 ihardlimit, isoftlimit, curinodes,
 * bhardlimit, bsoftlimit, curspace (bytes), btime, itime. An all-zero entry is unused, so an
 * entry that would be all zero (id 0, nothing used, no limits) gets itime 1.
 *
 * The rewritten file lists the ids in order: index blocks after the root, then the data blocks
 * packed full; only the last data block can have free entries and it alone is on the
 * free-entry list; there are no free blocks.
 */
import type { BlockDevice } from "@imgpatch/disk";
import { replaceContent } from "./content.js";
import type { EditContext } from "./edit-context.js";
import { Ext4FormatError, Ext4UnsupportedError } from "./errors.js";
import { INODE_FLAGS, RO_COMPAT } from "./features.js";
import { BG_FLAGS } from "./group-desc.js";
import { inodeBlocks512, parseInode, S_IFLNK, S_IFMT } from "./inode.js";
import { inodeRef } from "./inode-table.js";
import { hasRoCompat } from "./superblock.js";

const QBLK = 1024;
const ENTRY = 72;
const PER_BLOCK = Math.floor((QBLK - 16) / ENTRY);
const MAGICS = [0xd9c01f11, 0xd9c01927, 0xd9c03f14] as const;
const NAMES = ["user", "group", "project"] as const;

export interface QuotaUsage {
  space: number;
  inodes: number;
}

/** Per quota type (user, group, project): id → usage. */
export type QuotaUsageMaps = [Map<number, QuotaUsage>, Map<number, QuotaUsage>, Map<number, QuotaUsage>];

/** The superblock's quota inodes by type (0 = that type is not kept). */
export function quotaInodes(ctx: EditContext): [number, number, number] {
  return [ctx.sb.usrQuotaInum, ctx.sb.grpQuotaInum, ctx.sb.prjQuotaInum];
}

/** Usage as e2fsck computes it, from the inode tables on the device (flush first). */
export async function computeQuotaUsage(ctx: EditContext, device: BlockDevice): Promise<QuotaUsageMaps> {
  const sb = ctx.sb;
  const maps: QuotaUsageMaps = [new Map(), new Map(), new Map()];
  const huge = hasRoCompat(sb, RO_COMPAT.huge_file);
  const unusedKnown = hasRoCompat(sb, RO_COMPAT.gdt_csum) || hasRoCompat(sb, RO_COMPAT.metadata_csum);
  const isz = sb.inodeSize;
  const skip = new Set([sb.prjQuotaInum, sb.orphanFileInum].filter((n) => n !== 0));
  const add = (m: Map<number, QuotaUsage>, id: number, space: number) => {
    const u = m.get(id);
    if (u) {
      u.space += space;
      u.inodes++;
    } else m.set(id, { space, inodes: 1 });
  };
  for (let g = 0; g < ctx.groups.length; g++) {
    const gd = ctx.groups[g];
    if (unusedKnown && gd.flags & BG_FLAGS.inodeUninit) continue;
    const count = sb.inodesPerGroup - (unusedKnown ? Math.min(gd.itableUnused, sb.inodesPerGroup) : 0);
    if (count <= 0) continue;
    const bytes = await device.read(gd.inodeTable * ctx.bs, Math.ceil((count * isz) / ctx.bs) * ctx.bs);
    for (let i = 0; i < count; i++) {
      const ino = g * sb.inodesPerGroup + i + 1;
      if (ino !== 2 && ino < sb.firstIno) continue;
      if (skip.has(ino)) continue;
      const raw = bytes.subarray(i * isz, (i + 1) * isz);
      // i_links_count (le16 at 0x1a): 0 = not in use.
      if ((raw[0x1a] | (raw[0x1b] << 8)) === 0) continue;
      const inode = parseInode(ino, raw, isz);
      if (inode.flags & INODE_FLAGS.EA_INODE) continue;
      if ((inode.mode & S_IFMT) === S_IFLNK && inode.flags & INODE_FLAGS.INLINE_DATA) continue;
      const space = inodeBlocks512(inode, huge, ctx.bs) * 512;
      add(maps[0], inode.uid, space);
      add(maps[1], inode.gid, space);
      add(maps[2], inode.projid ?? 0, space);
    }
  }
  return maps;
}

export interface QuotaFile {
  bgrace: number;
  igrace: number;
  flags: number;
  /** id → its 72-byte entry. */
  entries: Map<number, Uint8Array>;
}

function le32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}
function setLe32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}
function setLe64(b: Uint8Array, o: number, v: number): void {
  setLe32(b, o, v % 0x1_0000_0000);
  setLe32(b, o + 4, Math.floor(v / 0x1_0000_0000));
}

/** Parse a v2r1 quota file; malformed trees are typed errors naming the quota inode. */
export function parseQuotaFile(
  data: Uint8Array,
  type: number,
  where: { file: string; inode: number },
): QuotaFile {
  const fail = (why: string) =>
    new Ext4FormatError(`${NAMES[type]} quota file: ${why}`, { ...where, structure: "quota file" });
  if (data.length < 2 * QBLK) throw fail(`only ${data.length} bytes`);
  if (le32(data, 0) !== MAGICS[type]) throw fail(`bad magic 0x${le32(data, 0).toString(16)}`);
  if (le32(data, 4) !== 1)
    throw new Ext4UnsupportedError(
      "quota",
      `${NAMES[type]} quota file version ${le32(data, 4)} (only v2r1 is kept)`,
      {
        ...where,
        structure: "quota file",
      },
    );
  const blocks = le32(data, 20);
  const fileBlocks = Math.floor(data.length / QBLK);
  if (blocks > fileBlocks || blocks < 2)
    throw fail(`dqi_blocks ${blocks} does not fit the ${data.length}-byte file`);
  const q: QuotaFile = {
    bgrace: le32(data, 8),
    igrace: le32(data, 12),
    flags: le32(data, 16),
    entries: new Map(),
  };
  const seen = new Set<number>();
  const ref = (blk: number) => {
    if (blk >= blocks) throw fail(`reference to block ${blk} past dqi_blocks ${blocks}`);
    return blk;
  };
  const walk = (blk: number, depth: number) => {
    if (seen.has(blk)) return; // shared or looping refs: each block is read once
    seen.add(blk);
    const b = data.subarray(blk * QBLK, (blk + 1) * QBLK);
    if (depth === 4) {
      for (let i = 0; i < PER_BLOCK; i++) {
        const e = b.subarray(16 + i * ENTRY, 16 + (i + 1) * ENTRY);
        if (e.every((x) => x === 0)) continue;
        q.entries.set(le32(e, 0), Uint8Array.from(e)); // a copy (Buffer.slice would be a view)
      }
      return;
    }
    for (let i = 0; i < 256; i++) {
      const r = le32(b, i * 4);
      if (r) walk(ref(r), depth + 1);
    }
  };
  walk(1, 0);
  return q;
}

/** Encode a quota file holding `q`'s entries (see the layout above). */
export function buildQuotaFile(q: QuotaFile, type: number): Uint8Array {
  const ids = [...q.entries.keys()].sort((a, b) => a - b);
  // Index blocks by prefix ("d:bytes"), assigned in id order after the root.
  let next = 2;
  const index = new Map<string, number>([["0:", 1]]);
  const prefix = (id: number, depth: number) => {
    let s = `${depth}:`;
    for (let d = 0; d < depth; d++) s += `${(id >>> (24 - 8 * d)) & 0xff},`;
    return s;
  };
  for (const id of ids)
    for (let d = 1; d < 4; d++) {
      const p = prefix(id, d);
      if (!index.has(p)) index.set(p, next++);
    }
  const firstData = next;
  const dataBlocks = Math.ceil(ids.length / PER_BLOCK);
  const total = firstData + dataBlocks;
  const out = new Uint8Array(total * QBLK);
  setLe32(out, 0, MAGICS[type]);
  setLe32(out, 4, 1);
  setLe32(out, 8, q.bgrace);
  setLe32(out, 12, q.igrace);
  setLe32(out, 16, q.flags);
  setLe32(out, 20, total);
  setLe32(out, 24, 0);
  const lastCount = ids.length % PER_BLOCK;
  setLe32(out, 28, dataBlocks && lastCount ? total - 1 : 0);
  ids.forEach((id, n) => {
    const dblk = firstData + Math.floor(n / PER_BLOCK);
    for (let d = 0; d < 4; d++) {
      const at = index.get(prefix(id, d)) as number;
      const child = d < 3 ? (index.get(prefix(id, d + 1)) as number) : dblk;
      setLe32(out, at * QBLK + ((id >>> (24 - 8 * d)) & 0xff) * 4, child);
    }
    const slot = n % PER_BLOCK;
    out.set(q.entries.get(id) as Uint8Array, dblk * QBLK + 16 + slot * ENTRY);
    const h = dblk * QBLK + 8; // dqdh_entries (le16)
    out[h] = slot + 1;
    out[h + 1] = 0;
  });
  return out;
}

/** The entry for `id` with its usage set (limits and times kept). */
function withUsage(old: Uint8Array | undefined, id: number, u: QuotaUsage): Uint8Array {
  const e = old ? Uint8Array.from(old) : new Uint8Array(ENTRY);
  setLe32(e, 0, id);
  setLe64(e, 24, u.inodes);
  setLe64(e, 48, u.space);
  if (e.every((x) => x === 0)) setLe64(e, 64, 1);
  return e;
}

/** Rewrite every quota file with the usage computed now. */
export async function updateQuotaFiles(ctx: EditContext, usage: QuotaUsageMaps): Promise<void> {
  const inos = quotaInodes(ctx);
  for (let type = 0; type < 3; type++) {
    const ino = inos[type];
    if (!ino) continue;
    const where = { file: ctx.reader.device.name, inode: ino };
    const inode = await ctx.reader.readInode(ino);
    const old = await ctx.reader.readFileInode(inode, `<${NAMES[type]} quota inode ${ino}>`);
    const q = parseQuotaFile(old, type, where);
    const entries = new Map<number, Uint8Array>();
    const zero = { space: 0, inodes: 0 };
    for (const [id, e] of q.entries) entries.set(id, withUsage(e, id, usage[type].get(id) ?? zero));
    for (const [id, u] of usage[type]) if (!entries.has(id)) entries.set(id, withUsage(undefined, id, u));
    const bytes = buildQuotaFile({ ...q, entries }, type);
    if (bytes.length === old.length && Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).equals(old))
      continue;
    const ref = await inodeRef(ctx, ino);
    if (ref.flags & INODE_FLAGS.INLINE_DATA)
      throw new Ext4UnsupportedError("quota", "an inline quota file", { ...where, structure: "quota file" });
    await replaceContent(ctx, ref, bytes, `<${NAMES[type]} quota inode ${ino}>`);
  }
}
