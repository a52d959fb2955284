/**
 * The ar archive a .deb is (deb(5)): the global magic "!<arch>\n", then members, each a 60-byte
 * header followed by its data, padded with "\n" to an even offset.
 *
 *   offset size field
 *        0   16 name (space padded; GNU ar may end it with "/")
 *       16   12 mtime (decimal)
 *       28    6 owner id
 *       34    6 group id
 *       40    8 mode (octal)
 *       48   10 size (decimal)
 *       58    2 end marker "`\n"
 */
import type { ByteSource } from "@imgpatch/pkgkit";
import { DebFormatError } from "./errors.js";

export const AR_MAGIC = "!<arch>\n";
const HEADER = 60;
/** A .deb has three members; anything past this many is not a package. */
const MAX_MEMBERS = 64;

export interface ArMember {
  name: string;
  /** Offset of the member's data in the archive. */
  offset: number;
  size: number;
  mode: number;
  mtime: number;
}

function field(h: Uint8Array, at: number, len: number): string {
  return Buffer.from(h.subarray(at, at + len))
    .toString("latin1")
    .trimEnd();
}

function decimal(
  h: Uint8Array,
  at: number,
  len: number,
  name: string,
  file: string,
  offset: number,
  radix = 10,
): number {
  const s = field(h, at, len);
  const re = radix === 8 ? /^[0-7]*$/ : /^[0-9]*$/;
  if (!re.test(s))
    throw new DebFormatError(`ar member header: ${name} "${s}" is not a number`, {
      file,
      offset: offset + at,
    });
  return s === "" ? 0 : Number.parseInt(s, radix);
}

/** Lists the members of an ar archive; every header and size is checked against the file. */
export async function readArMembers(src: ByteSource): Promise<ArMember[]> {
  const file = src.name;
  if (src.size < AR_MAGIC.length)
    throw new DebFormatError("not an ar archive: file too short", { file, offset: 0 });
  const magic = Buffer.from(await src.read(0, AR_MAGIC.length)).toString("latin1");
  if (magic !== AR_MAGIC) throw new DebFormatError("not an ar archive (bad magic)", { file, offset: 0 });
  const out: ArMember[] = [];
  let pos = AR_MAGIC.length;
  while (pos < src.size) {
    if (out.length >= MAX_MEMBERS)
      throw new DebFormatError(`more than ${MAX_MEMBERS} ar members`, { file, offset: pos });
    if (pos + HEADER > src.size)
      throw new DebFormatError("truncated ar member header", { file, offset: pos });
    const h = await src.read(pos, HEADER);
    if (h[58] !== 0x60 || h[59] !== 0x0a)
      throw new DebFormatError("bad ar member header end marker", { file, offset: pos + 58 });
    let name = field(h, 0, 16);
    if (name.endsWith("/") && name !== "/") name = name.slice(0, -1);
    const size = decimal(h, 48, 10, "size", file, pos);
    const member: ArMember = {
      name,
      offset: pos + HEADER,
      size,
      mode: decimal(h, 40, 8, "mode", file, pos, 8),
      mtime: decimal(h, 16, 12, "mtime", file, pos),
    };
    if (member.offset + size > src.size) {
      throw new DebFormatError(`truncated: ar member "${name}" needs ${size} bytes, the file ends first`, {
        file,
        offset: pos,
      });
    }
    out.push(member);
    pos = member.offset + size + (size % 2);
  }
  return out;
}
