/**
 * Berkeley DB hash file, read-only (rpm's `Packages` on EL7/EL8, as rpm's own bdb_ro backend reads
 * it): walk every bucket's page chain and collect key/data pairs, following overflow chains.
 *
 * Meta page (page 0), byte order given by the magic:
 *   0 lsn(8) · 8 pgno · 12 magic 0x061561 · 16 version · 20 pagesize · 24 encrypt_alg(1)
 *   25 type(1)=8 · 26 metaflags(1) · 28 free · 32 last_pgno · … · 72 max_bucket · 76 high_mask
 *   80 low_mask · 84 ffactor · 88 nelem · 92 h_charkey · 96 spares[32] (u32 each)
 * Page header (every other page, 26 bytes):
 *   0 lsn(8) · 8 pgno · 12 prev_pgno · 16 next_pgno · 20 entries(u16) · 22 hf_offset(u16)
 *   24 level(1) · 25 type(1): 13 = hash page, 7 = overflow page
 * Hash page: after the header, `entries` u16 offsets of items packed from the end of the page;
 *   item i ends where item i-1 starts (the first ends at the page end); items alternate key, data.
 *   Item type byte: 1 keydata (bytes follow) · 3 offpage: unused(3) pgno(4) tlen(4).
 * Overflow page: hf_offset = bytes on this page, data after the header, chain by next_pgno.
 * Bucket b lives on page b + spares[ceil(log2(b + 1))].
 */
import { readFile } from "node:fs/promises";
import { RepoFormatError, RepoLimitError, RepoUnsupportedError } from "./errors.js";
import { type InstalledPackage, installedFromBlob, loadHeaderParser } from "./rpmdb-header.js";

const HASH_MAGIC = 0x061561;
const P_HASHMETA = 8;
const P_HASH = 13;
const P_HASH_UNSORTED = 2;
const P_OVERFLOW = 7;
const H_KEYDATA = 1;
const H_OFFPAGE = 3;
const PAGE_HEADER = 26;

export interface BdbPair {
  key: Uint8Array;
  data: Uint8Array;
}

function log2ceil(n: number): number {
  let i = 0;
  while (2 ** i < n) i++;
  return i;
}

/** Every key/data pair of a BDB hash database image. */
export function readBdbHash(file: Uint8Array, where: string): BdbPair[] {
  if (file.length < 512) throw new RepoFormatError("too small for a Berkeley DB file", { file: where });
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  let le: boolean;
  if (dv.getUint32(12, true) === HASH_MAGIC) le = true;
  else if (dv.getUint32(12, false) === HASH_MAGIC) le = false;
  else throw new RepoFormatError("not a Berkeley DB hash file (magic)", { file: where, offset: 12 });
  const u32 = (o: number) => dv.getUint32(o, le);
  const u16 = (o: number) => dv.getUint16(o, le);
  const pagesize = u32(20);
  if (pagesize < 512 || pagesize > 65536 || (pagesize & (pagesize - 1)) !== 0) {
    throw new RepoFormatError(`page size ${pagesize}`, { file: where, offset: 20 });
  }
  if (file[25] !== P_HASHMETA)
    throw new RepoFormatError(`meta page type ${file[25]}`, { file: where, offset: 25 });
  if (file[24] !== 0) throw new RepoUnsupportedError("encrypted Berkeley DB", { file: where, offset: 24 });
  if ((file[26]! & 1) !== 0)
    throw new RepoUnsupportedError("Berkeley DB with page checksums", { file: where, offset: 26 });
  const pages = Math.floor(file.length / pagesize);
  const maxBucket = u32(72);
  if (maxBucket >= pages)
    throw new RepoFormatError(`max_bucket ${maxBucket} past ${pages} pages`, { file: where, offset: 72 });
  const spares: number[] = [];
  for (let i = 0; i < 32; i++) spares.push(u32(96 + i * 4));

  const page = (pgno: number, off: number) => {
    if (pgno === 0 || pgno >= pages) {
      throw new RepoFormatError(`page ${pgno} outside the file (${pages} pages)`, {
        file: where,
        offset: off,
      });
    }
    return pgno * pagesize;
  };
  const visited = new Uint8Array(pages);
  const overflow = (pgno: number, tlen: number, at: number): Uint8Array => {
    if (tlen > 256 * 1024 * 1024)
      throw new RepoLimitError(`overflow item of ${tlen} bytes`, { file: where, offset: at });
    const out = new Uint8Array(tlen);
    let got = 0;
    let seen = 0;
    while (got < tlen) {
      const base = page(pgno, at);
      if (file[base + 25] !== P_OVERFLOW) {
        throw new RepoFormatError(`page ${pgno} is not an overflow page`, { file: where, offset: base + 25 });
      }
      if (++seen > pages) throw new RepoFormatError("overflow chain loops", { file: where, offset: base });
      const len = u16(base + 22);
      if (len > pagesize - PAGE_HEADER || got + len > tlen) {
        throw new RepoFormatError(`overflow page ${pgno} holds ${len} bytes`, {
          file: where,
          offset: base + 22,
        });
      }
      out.set(file.subarray(base + PAGE_HEADER, base + PAGE_HEADER + len), got);
      got += len;
      pgno = u32(base + 16);
      if (got < tlen && pgno === 0)
        throw new RepoFormatError("overflow chain ends early", { file: where, offset: base });
      at = base;
    }
    return out;
  };
  const item = (base: number, start: number, end: number): Uint8Array => {
    if (start < PAGE_HEADER || end > pagesize || start >= end) {
      throw new RepoFormatError(`hash item at ${start}..${end}`, { file: where, offset: base + start });
    }
    const t = file[base + start];
    if (t === H_KEYDATA) return file.subarray(base + start + 1, base + end);
    if (t === H_OFFPAGE) {
      if (end - start < 12)
        throw new RepoFormatError("short offpage item", { file: where, offset: base + start });
      return overflow(u32(base + start + 4), u32(base + start + 8), base + start);
    }
    throw new RepoUnsupportedError(`hash item type ${t} (duplicates)`, { file: where, offset: base + start });
  };

  const pairs: BdbPair[] = [];
  for (let b = 0; b <= maxBucket; b++) {
    let pgno = b + spares[log2ceil(b + 1)]!;
    while (pgno !== 0) {
      const base = page(pgno, 96);
      if (visited[pgno])
        throw new RepoFormatError(`page ${pgno} reached twice`, { file: where, offset: base });
      visited[pgno] = 1;
      const type = file[base + 25];
      if (type !== P_HASH && type !== P_HASH_UNSORTED) {
        throw new RepoFormatError(`bucket ${b}: page ${pgno} has type ${type}`, {
          file: where,
          offset: base + 25,
        });
      }
      const n = u16(base + 20);
      if (PAGE_HEADER + n * 2 > pagesize || n % 2 !== 0) {
        throw new RepoFormatError(`page ${pgno}: ${n} entries`, { file: where, offset: base + 20 });
      }
      let prevStart = pagesize;
      const items: Uint8Array[] = [];
      for (let i = 0; i < n; i++) {
        const start = u16(base + PAGE_HEADER + i * 2);
        items.push(item(base, start, prevStart));
        prevStart = start;
      }
      for (let i = 0; i < n; i += 2) pairs.push({ key: items[i]!, data: items[i + 1]! });
      pgno = u32(base + 16);
    }
  }
  return pairs;
}

/** Every installed package of a BDB `Packages` file (keys are native-order header numbers). */
export async function readRpmdbBdb(file: string, bytes?: Uint8Array): Promise<InstalledPackage[]> {
  await loadHeaderParser();
  const img = bytes ?? (await readFile(file));
  const out: InstalledPackage[] = [];
  for (const { key, data } of readBdbHash(img, file)) {
    if (key.length !== 4) throw new RepoFormatError(`key of ${key.length} bytes`, { file });
    const hnum = new DataView(key.buffer, key.byteOffset, 4).getUint32(0, true);
    // Header number 0 holds rpm's next-instance counter, not a header.
    if (hnum === 0) continue;
    out.push(installedFromBlob(hnum, data, `${file} header ${hnum}`));
  }
  return out.sort((a, b) => a.hnum - b.hnum);
}
