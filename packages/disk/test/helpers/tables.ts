// Test-only builders for partition tables, so bad-input tests can craft exactly the damage they
// need (including hostile headers with *valid* CRCs). Real-tool images come from sfdisk in the
// oracle tests; these builders are checked against sfdisk there too.
import { crc32 } from "node:zlib";
import { parseGuid } from "../../src/guid.js";

export interface GptEntrySpec {
  index?: number;
  type: string;
  uuid: string;
  first: number;
  last: number;
  name?: string;
  attributes?: bigint;
}

export interface GptSpec {
  sectorSize?: number;
  diskSectors: number;
  diskGuid?: string;
  entryCount?: number;
  entrySize?: number;
  entries: GptEntrySpec[];
  /** Extra MBR entries alongside the 0xEE one (hybrid MBR). */
  hybrid?: MbrEntrySpec[];
}

export interface MbrEntrySpec {
  slot?: number;
  status?: number;
  type: number;
  start: number;
  sectors: number;
}

export function writeMbrSector(sector: Uint8Array, entries: MbrEntrySpec[], signature = 0x1234abcd): void {
  const dv = new DataView(sector.buffer, sector.byteOffset, 512);
  dv.setUint32(0x1b8, signature, true);
  entries.forEach((e, i) => {
    const off = 0x1be + (e.slot ?? i) * 16;
    dv.setUint8(off, e.status ?? 0);
    dv.setUint8(off + 4, e.type);
    dv.setUint32(off + 8, e.start, true);
    dv.setUint32(off + 12, e.sectors, true);
  });
  sector[510] = 0x55;
  sector[511] = 0xaa;
}

export function buildGpt(spec: GptSpec): Uint8Array {
  const ss = spec.sectorSize ?? 512;
  const count = spec.entryCount ?? 128;
  const esize = spec.entrySize ?? 128;
  const arraySectors = Math.ceil((count * esize) / ss);
  const img = new Uint8Array(spec.diskSectors * ss);
  const last = spec.diskSectors - 1;
  const pmbrSectors = Math.min(spec.diskSectors - 1, 0xffffffff);
  writeMbrSector(img.subarray(0, 512), [
    { type: 0xee, start: 1, sectors: pmbrSectors, slot: 0 },
    ...(spec.hybrid ?? []).map((e, i) => ({ ...e, slot: e.slot ?? i + 1 })),
  ]);
  const array = new Uint8Array(count * esize);
  const adv = new DataView(array.buffer);
  spec.entries.forEach((e, i) => {
    const off = (e.index ?? i) * esize;
    array.set(parseGuid(e.type), off);
    array.set(parseGuid(e.uuid), off + 16);
    adv.setBigUint64(off + 32, BigInt(e.first), true);
    adv.setBigUint64(off + 40, BigInt(e.last), true);
    adv.setBigUint64(off + 48, e.attributes ?? 0n, true);
    const name = e.name ?? "";
    for (let k = 0; k < name.length && k < 36; k++) adv.setUint16(off + 56 + k * 2, name.charCodeAt(k), true);
  });
  const firstUsable = 2 + arraySectors;
  const lastUsable = last - 1 - arraySectors;
  const diskGuid = spec.diskGuid ?? "11111111-2222-3333-4444-555555555555";
  const write = (lba: number, alt: number, entriesLba: number) => {
    img.set(array, entriesLba * ss);
    const h = img.subarray(lba * ss, lba * ss + ss);
    const dv = new DataView(h.buffer, h.byteOffset, ss);
    h.set(new TextEncoder().encode("EFI PART"), 0);
    dv.setUint32(8, 0x00010000, true);
    dv.setUint32(12, 92, true);
    dv.setBigUint64(24, BigInt(lba), true);
    dv.setBigUint64(32, BigInt(alt), true);
    dv.setBigUint64(40, BigInt(firstUsable), true);
    dv.setBigUint64(48, BigInt(lastUsable), true);
    h.set(parseGuid(diskGuid), 56);
    dv.setBigUint64(72, BigInt(entriesLba), true);
    dv.setUint32(80, count, true);
    dv.setUint32(84, esize, true);
    fixGptCrcs(img, ss, lba);
  };
  write(1, last, 2);
  write(last, 1, last - arraySectors);
  return img;
}

/** Recompute the entry-array CRC and then the header CRC of the header at `lba`. */
export function fixGptCrcs(img: Uint8Array, ss: number, lba: number, { entries = true } = {}): void {
  const h = img.subarray(lba * ss, lba * ss + ss);
  const dv = new DataView(h.buffer, h.byteOffset, ss);
  if (entries) {
    const entriesLba = Number(dv.getBigUint64(72, true));
    const bytes = dv.getUint32(80, true) * dv.getUint32(84, true);
    const start = entriesLba * ss;
    if (start + bytes <= img.length) dv.setUint32(88, crc32(img.subarray(start, start + bytes)) >>> 0, true);
  }
  const size = Math.min(Math.max(dv.getUint32(12, true), 92), ss);
  dv.setUint32(16, 0, true);
  dv.setUint32(16, crc32(h.subarray(0, size)) >>> 0, true);
}

/** Set a header field (u32 or u64 by width) of the header at `lba` and fix its CRC. */
export function patchGptHeader(
  img: Uint8Array,
  ss: number,
  lba: number,
  field: number,
  value: number | bigint,
  width: 4 | 8,
): void {
  const dv = new DataView(img.buffer, img.byteOffset + lba * ss, ss);
  if (width === 4) dv.setUint32(field, Number(value), true);
  else dv.setBigUint64(field, BigInt(value), true);
  fixGptCrcs(img, ss, lba, { entries: false });
}

export const LINUX_FS = "0fc63daf-8483-4772-8e79-3d69d8477de4";
export const ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
export const BIOS_BOOT = "21686148-6449-6e6f-744e-656564454649";
