/**
 * Streaming cpio reader for RPM payloads.
 *
 * newc / crc header ("070701" / "070702"), 110 bytes of ASCII hex, then the NUL-terminated name,
 * padded so header+name is a multiple of 4, then the data padded to 4:
 *
 *   0 magic(6)  6 ino  14 mode  22 uid  30 gid  38 nlink  46 mtime  54 filesize
 *  62 devmajor  70 devminor  78 rdevmajor  86 rdevminor  94 namesize  102 check   (8 hex digits each)
 *
 * Stripped ("07070X", every v6 package and v4 packages with files > 4 GiB): the magic and an 8-hex-digit
 * index into the header's file list, padded to 16 bytes; size and metadata come from the header.
 * The archive ends with a newc entry named "TRAILER!!!".
 */
import { ChunkReader as PkgChunkReader } from "@imgpatch/pkgkit";
import { RpmFormatError } from "./errors.js";

export const CPIO_NEWC = "070701";
export const CPIO_CRC = "070702";
export const CPIO_STRIPPED = "07070X";
export const CPIO_TRAILER = "TRAILER!!!";
const NEWC_HEADER_SIZE = 110;
const STRIPPED_HEADER_SIZE = 14;
const MAX_NAME_SIZE = 4096 + 2;

/** Offsets of the 8-digit hex fields after the 6-byte magic. */
const Newc = {
  ino: 6,
  mode: 14,
  uid: 22,
  gid: 30,
  nlink: 38,
  mtime: 46,
  filesize: 54,
  devmajor: 62,
  devminor: 70,
  rdevmajor: 78,
  rdevminor: 86,
  namesize: 94,
  check: 102,
} as const;

/** The shared chunk reader (@imgpatch/pkgkit), failing with RpmFormatError. */
export class ChunkReader extends PkgChunkReader {
  constructor(input: AsyncIterable<Uint8Array>, limit: number, file: string) {
    super(input, limit, file, RpmFormatError);
  }
}

export interface CpioHeader {
  magic: string;
  /** Payload offset (decompressed) of this entry's header. */
  offset: number;
  /** Name for newc entries; undefined for stripped ones. */
  name?: string;
  /** File index for stripped entries. */
  index?: number;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  /** Data size in the archive (from the header for stripped entries, filled in by the caller). */
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  check: number;
}

function hexField(bytes: Uint8Array, at: number, name: string, file: string, offset: number): number {
  let v = 0;
  for (let i = 0; i < 8; i++) {
    const c = bytes[at + i];
    let d: number;
    if (c >= 0x30 && c <= 0x39) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
    else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
    else throw new RpmFormatError(`cpio header field ${name} is not hex`, { file, offset: offset + at });
    v = v * 16 + d;
  }
  return v;
}

/**
 * Reads the next cpio header; returns null after the trailer. For stripped entries `size` is 0 and
 * the caller supplies it from the RPM header.
 */
export async function readCpioHeader(r: ChunkReader, file: string): Promise<CpioHeader | null> {
  const offset = r.position;
  const magicBytes = await r.readExact(6, "cpio magic");
  const magic = String.fromCharCode(...magicBytes);
  if (magic === CPIO_STRIPPED) {
    const rest = await r.readExact(STRIPPED_HEADER_SIZE - 6, "stripped cpio header");
    const all = new Uint8Array(STRIPPED_HEADER_SIZE);
    all.set(magicBytes);
    all.set(rest, 6);
    const index = hexField(all, 6, "index", file, offset);
    await r.pad(4, "stripped cpio header padding");
    return {
      magic,
      offset,
      index,
      ino: 0,
      mode: 0,
      uid: 0,
      gid: 0,
      nlink: 0,
      mtime: 0,
      size: 0,
      rdevMajor: 0,
      rdevMinor: 0,
      check: 0,
    };
  }
  if (magic !== CPIO_NEWC && magic !== CPIO_CRC) {
    throw new RpmFormatError(`bad cpio magic "${magic.replace(/[^\x20-\x7e]/g, "?")}"`, { file, offset });
  }
  const hdr = new Uint8Array(NEWC_HEADER_SIZE);
  hdr.set(magicBytes);
  hdr.set(await r.readExact(NEWC_HEADER_SIZE - 6, "cpio header"), 6);
  const f = (k: keyof typeof Newc) => hexField(hdr, Newc[k], k, file, offset);
  const namesize = f("namesize");
  if (namesize < 2 || namesize > MAX_NAME_SIZE) {
    throw new RpmFormatError(`cpio name size ${namesize} out of range`, {
      file,
      offset: offset + Newc.namesize,
    });
  }
  const nameBytes = await r.readExact(namesize, "cpio name");
  if (nameBytes[namesize - 1] !== 0 || nameBytes.indexOf(0) !== namesize - 1) {
    throw new RpmFormatError("cpio name is not a single NUL-terminated string", {
      file,
      offset: offset + NEWC_HEADER_SIZE,
    });
  }
  const name = new TextDecoder().decode(nameBytes.subarray(0, namesize - 1));
  await r.pad(4, "cpio name padding");
  if (name === CPIO_TRAILER) return null;
  return {
    magic,
    offset,
    name,
    ino: f("ino"),
    mode: f("mode"),
    uid: f("uid"),
    gid: f("gid"),
    nlink: f("nlink"),
    mtime: f("mtime"),
    size: f("filesize"),
    rdevMajor: f("rdevmajor"),
    rdevMinor: f("rdevminor"),
    check: f("check"),
  };
}
