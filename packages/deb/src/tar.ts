/**
 * A streaming reader for the tar members of a .deb (dpkg-deb writes GNU tar; ustar and pax are read
 * too). The cli's tar-stream use (`--tar-in`) does not fit: it hides pax/GNU details, offers no
 * offsets for errors and no bound on long names.
 *
 * Header block (512 bytes), numeric fields octal ASCII, or base-256 when the first byte has 0x80:
 *
 *   offset size field        offset size field
 *        0  100 name              257    6 magic ("ustar\0" or GNU "ustar ")
 *      100    8 mode              263    2 version
 *      108    8 uid               265   32 uname
 *      116    8 gid               297   32 gname
 *      124   12 size              329    8 devmajor
 *      136   12 mtime             337    8 devminor
 *      148    8 checksum          345  155 prefix (ustar)
 *      156    1 typeflag
 *      157  100 linkname
 *
 * typeflag: '0'/NUL file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo,
 * 'L'/'K' GNU long name/link for the next entry, 'x' pax header for the next entry, 'g' global pax.
 */
import { ChunkReader } from "@imgpatch/pkgkit";
import { DebFormatError, DebUnsupportedError } from "./errors.js";

export type TarType = "file" | "hardlink" | "symlink" | "chardev" | "blockdev" | "dir" | "fifo";

export interface TarEntry {
  /** Name as stored ("./usr/bin/x"), after GNU/pax long names. */
  name: string;
  type: TarType;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number;
  mtime: number;
  linkname: string;
  devMajor: number;
  devMinor: number;
  /** Offset of the header in the decompressed member. */
  offset: number;
}

const BLOCK = 512;
/** Longest GNU/pax long name we accept (PATH_MAX). */
const MAX_LONG = 4096;
/** Largest pax header block we read. */
const MAX_PAX = 64 * 1024;

const TYPES: Record<string, TarType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "chardev",
  "4": "blockdev",
  "5": "dir",
  "6": "fifo",
};

function str(h: Uint8Array, at: number, len: number): string {
  let end = at;
  while (end < at + len && h[end] !== 0) end++;
  return Buffer.from(h.subarray(at, end)).toString("utf8");
}

function num(h: Uint8Array, at: number, len: number, name: string, file: string, offset: number): number {
  if (h[at] & 0x80) {
    // GNU base-256: big-endian, the first byte's top bit is the marker (negative values refused).
    if (h[at] & 0x40) throw new DebFormatError(`tar header: negative ${name}`, { file, offset: offset + at });
    let v = h[at] & 0x3f;
    for (let i = 1; i < len; i++) v = v * 256 + h[at + i];
    if (!Number.isSafeInteger(v))
      throw new DebFormatError(`tar header: ${name} too large`, { file, offset: offset + at });
    return v;
  }
  const s = str(h, at, len).trim();
  if (!/^[0-7]*$/.test(s))
    throw new DebFormatError(`tar header: ${name} "${s.slice(0, 20)}" is not octal`, {
      file,
      offset: offset + at,
    });
  return s === "" ? 0 : Number.parseInt(s, 8);
}

function checksumOk(h: Uint8Array, stored: number): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return sum === stored;
}

function parsePax(text: string, file: string, offset: number): Map<string, string> {
  const out = new Map<string, string>();
  const bytes = Buffer.from(text, "utf8");
  let pos = 0;
  while (pos < bytes.length) {
    const sp = bytes.indexOf(0x20, pos);
    if (sp < 0) throw new DebFormatError("pax header: record without length", { file, offset });
    const len = Number(bytes.subarray(pos, sp).toString("latin1"));
    if (!Number.isSafeInteger(len) || len <= sp - pos || pos + len > bytes.length) {
      throw new DebFormatError("pax header: bad record length", { file, offset });
    }
    const rec = bytes.subarray(sp + 1, pos + len - 1).toString("utf8");
    const eq = rec.indexOf("=");
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    pos += len;
  }
  return out;
}

/**
 * Yields every entry with its data. The consumer reads `data` before asking for the next entry (what
 * it leaves is skipped). `limit` bounds the decompressed size (decompression bombs).
 */
export async function* readTar(
  input: AsyncIterable<Uint8Array>,
  file: string,
  limit = Number.MAX_SAFE_INTEGER,
): AsyncGenerator<{ entry: TarEntry; data: AsyncIterable<Uint8Array> }> {
  const r = new ChunkReader(input, limit, file, DebFormatError);
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Map<string, string> | undefined;
  const readBlob = async (size: number, max: number, what: string, at: number): Promise<string> => {
    if (size > max)
      throw new DebFormatError(`tar: ${what} of ${size} bytes is too long`, { file, offset: at });
    const b = await r.readExact(size, what);
    await r.pad(BLOCK, `${what} padding`);
    return Buffer.from(b).toString("utf8");
  };
  try {
    for (;;) {
      if (await r.atEnd()) return; // dpkg accepts a member without the two zero blocks
      const offset = r.position;
      const h = await r.readExact(BLOCK, "tar header");
      if (h.every((b) => b === 0)) return;
      const stored = num(h, 148, 8, "checksum", file, offset);
      if (!checksumOk(h, stored)) throw new DebFormatError("tar header checksum mismatch", { file, offset });
      const flag = String.fromCharCode(h[156]);
      const size = num(h, 124, 12, "size", file, offset);
      if (flag === "L") {
        longName = (await readBlob(size, MAX_LONG, "GNU long name", offset)).replace(/\0+$/, "");
        continue;
      }
      if (flag === "K") {
        longLink = (await readBlob(size, MAX_LONG, "GNU long link", offset)).replace(/\0+$/, "");
        continue;
      }
      if (flag === "x") {
        pax = parsePax(await readBlob(size, MAX_PAX, "pax header", offset), file, offset);
        continue;
      }
      if (flag === "g") {
        await readBlob(size, MAX_PAX, "global pax header", offset);
        continue;
      }
      const type = TYPES[flag];
      if (!type) throw new DebUnsupportedError(`tar entry type "${flag}" is not supported`, { file, offset });
      const magic = str(h, 257, 6);
      const prefix = magic === "ustar" ? str(h, 345, 155) : "";
      let name = longName ?? (prefix ? `${prefix}/${str(h, 0, 100)}` : str(h, 0, 100));
      let linkname = longLink ?? str(h, 157, 100);
      let entrySize = size;
      let mtime = num(h, 136, 12, "mtime", file, offset);
      if (pax) {
        name = pax.get("path") ?? name;
        linkname = pax.get("linkpath") ?? linkname;
        const ps = pax.get("size");
        if (ps !== undefined) {
          if (!/^\d+$/.test(ps)) throw new DebFormatError("pax header: bad size", { file, offset });
          entrySize = Number(ps);
        }
        const pm = pax.get("mtime");
        if (pm !== undefined && /^\d+(\.\d+)?$/.test(pm)) mtime = Math.floor(Number(pm));
      }
      longName = longLink = pax = undefined;
      const entry: TarEntry = {
        name,
        type,
        mode: num(h, 100, 8, "mode", file, offset) & 0o7777,
        uid: num(h, 108, 8, "uid", file, offset),
        gid: num(h, 116, 8, "gid", file, offset),
        uname: str(h, 265, 32),
        gname: str(h, 297, 32),
        size: type === "file" ? entrySize : 0,
        mtime,
        linkname,
        devMajor: type === "chardev" || type === "blockdev" ? num(h, 329, 8, "devmajor", file, offset) : 0,
        devMinor: type === "chardev" || type === "blockdev" ? num(h, 337, 8, "devminor", file, offset) : 0,
        offset,
      };
      let consumed = false;
      const data: AsyncIterable<Uint8Array> = {
        [Symbol.asyncIterator]: () => {
          consumed = true;
          return r.readRange(entry.size, `data of ${name}`)[Symbol.asyncIterator]();
        },
      };
      yield { entry, data };
      if (!consumed) await r.skip(entry.size, `data of ${name}`);
      await r.pad(BLOCK, `data padding of ${name}`);
    }
  } finally {
    await r.close();
  }
}
