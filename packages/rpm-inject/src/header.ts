/**
 * The RPM header structure shared by the signature and the main header:
 *
 *   intro (16 bytes)   magic 8E AD E8, version 01, 4 reserved bytes, u32 BE index count, u32 BE store size
 *   index (16 × n)     per entry: i32 tag, u32 type, i32 offset into the store, u32 count (all BE)
 *   store              the values; integers naturally aligned, strings NUL-terminated
 *
 * Every entry is checked against the store when the header is parsed, so later accessors never read
 * out of bounds and hostile counts cannot cause large allocations.
 */
import { RpmFormatError } from "./errors.js";
import { RegionTag, RpmType } from "./tags.js";

export const HEADER_MAGIC = [0x8e, 0xad, 0xe8, 0x01] as const;
export const HEADER_INTRO_SIZE = 16;
export const INDEX_ENTRY_SIZE = 16;
/** rpm refuses more index entries than this (hdrchkTags). */
export const MAX_INDEX_ENTRIES = 0xffff;
/** rpm refuses a store larger than this (hdrchkData). */
export const MAX_STORE_SIZE = 256 * 1024 * 1024;

/** Field table of the 16-byte header intro. */
const Intro = { magic: 0, reserved: 4, indexCount: 8, storeSize: 12 } as const;
/** Field table of a 16-byte index entry. */
const Entry = { tag: 0, type: 4, offset: 8, count: 12 } as const;

const TYPE_SIZES: Record<number, number> = {
  [RpmType.CHAR]: 1,
  [RpmType.INT8]: 1,
  [RpmType.INT16]: 2,
  [RpmType.INT32]: 4,
  [RpmType.INT64]: 8,
  [RpmType.BIN]: 1,
};

const TYPE_NAMES = [
  "NULL",
  "CHAR",
  "INT8",
  "INT16",
  "INT32",
  "INT64",
  "STRING",
  "BIN",
  "STRING_ARRAY",
  "I18NSTRING",
];

export interface IndexEntry {
  tag: number;
  type: number;
  /** Offset into the store. */
  offset: number;
  count: number;
  /** Byte length of the value inside the store (computed and bounds-checked at parse time). */
  length: number;
}

export interface HeaderSizes {
  indexCount: number;
  storeSize: number;
  /** Intro + index + store. */
  totalSize: number;
}

const decoder = new TextDecoder("utf-8", { fatal: false });

/**
 * Reads the 16-byte intro and returns the sizes; `fileOffset` and `file` are for error messages.
 * `limit` is how many bytes remain in the file from the intro, so a header claiming more is refused
 * before anything is allocated.
 */
export function parseHeaderIntro(
  intro: Uint8Array,
  file: string,
  fileOffset: number,
  limit: number,
): HeaderSizes {
  if (intro.length < HEADER_INTRO_SIZE) {
    throw new RpmFormatError("truncated header intro", { file, offset: fileOffset });
  }
  for (let i = 0; i < HEADER_MAGIC.length; i++) {
    if (intro[Intro.magic + i] !== HEADER_MAGIC[i]) {
      throw new RpmFormatError("bad header magic (expected 8e ad e8 01)", { file, offset: fileOffset });
    }
  }
  const dv = new DataView(intro.buffer, intro.byteOffset, intro.byteLength);
  const indexCount = dv.getUint32(Intro.indexCount);
  const storeSize = dv.getUint32(Intro.storeSize);
  if (indexCount < 1 || indexCount > MAX_INDEX_ENTRIES) {
    throw new RpmFormatError(`header index count ${indexCount} out of range 1..${MAX_INDEX_ENTRIES}`, {
      file,
      offset: fileOffset + Intro.indexCount,
    });
  }
  if (storeSize > MAX_STORE_SIZE) {
    throw new RpmFormatError(`header store size ${storeSize} exceeds ${MAX_STORE_SIZE}`, {
      file,
      offset: fileOffset + Intro.storeSize,
    });
  }
  const totalSize = HEADER_INTRO_SIZE + indexCount * INDEX_ENTRY_SIZE + storeSize;
  if (totalSize > limit) {
    throw new RpmFormatError(
      `truncated: header needs ${totalSize} bytes (${indexCount} entries, ${storeSize}-byte store) but only ${limit} remain`,
      { file, offset: fileOffset },
    );
  }
  return { indexCount, storeSize, totalSize };
}

/** A parsed, bounds-checked header. `bytes` is the whole header (intro, index, store) for digests. */
export class RpmHeader {
  readonly entries = new Map<number, IndexEntry>();
  readonly indexCount: number;
  readonly storeSize: number;
  private readonly store: Uint8Array;
  private readonly storeView: DataView;

  /**
   * @param bytes the whole header, intro included
   * @param file RPM name for error messages
   * @param fileOffset where the header starts in the RPM file
   */
  constructor(
    readonly bytes: Uint8Array,
    readonly file: string,
    readonly fileOffset: number,
  ) {
    const sizes = parseHeaderIntro(bytes, file, fileOffset, bytes.length);
    this.indexCount = sizes.indexCount;
    this.storeSize = sizes.storeSize;
    const storeStart = HEADER_INTRO_SIZE + sizes.indexCount * INDEX_ENTRY_SIZE;
    this.store = bytes.subarray(storeStart, storeStart + sizes.storeSize);
    this.storeView = new DataView(this.store.buffer, this.store.byteOffset, this.store.byteLength);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < sizes.indexCount; i++) {
      const at = HEADER_INTRO_SIZE + i * INDEX_ENTRY_SIZE;
      const where = { file, offset: fileOffset + at };
      const tag = dv.getInt32(at + Entry.tag);
      const type = dv.getUint32(at + Entry.type);
      const offset = dv.getInt32(at + Entry.offset);
      const count = dv.getUint32(at + Entry.count);
      if (type < RpmType.CHAR || type > RpmType.I18NSTRING) {
        throw new RpmFormatError(`index entry ${i} (tag ${tag}) has unknown type ${type}`, where);
      }
      if (offset < 0 || offset > sizes.storeSize) {
        throw new RpmFormatError(
          `index entry ${i} (tag ${tag}) data offset ${offset} is outside the ${sizes.storeSize}-byte store`,
          where,
        );
      }
      if (count === 0) throw new RpmFormatError(`index entry ${i} (tag ${tag}) has count 0`, where);
      const length = this.valueLength(tag, type, offset, count, where);
      if (!this.entries.has(tag)) this.entries.set(tag, { tag, type, offset, count, length });
    }
    this.checkRegion();
  }

  private valueLength(
    tag: number,
    type: number,
    offset: number,
    count: number,
    where: { file: string; offset: number },
  ): number {
    const room = this.storeSize - offset;
    const fixed = TYPE_SIZES[type];
    if (fixed !== undefined) {
      if (fixed > 1 && offset % fixed !== 0) {
        throw new RpmFormatError(
          `tag ${tag}: ${TYPE_NAMES[type]} data at store offset ${offset} is misaligned`,
          where,
        );
      }
      if (count > room / fixed) {
        throw new RpmFormatError(
          `tag ${tag}: ${count} × ${TYPE_NAMES[type]} at store offset ${offset} runs past the ${this.storeSize}-byte store`,
          where,
        );
      }
      return count * fixed;
    }
    if (type === RpmType.STRING && count !== 1) {
      throw new RpmFormatError(`tag ${tag}: STRING with count ${count}`, where);
    }
    // Each string takes at least its NUL, so a count larger than the room left is refused at once.
    if (count > room) {
      throw new RpmFormatError(`tag ${tag}: ${count} strings cannot fit in ${room} store bytes`, where);
    }
    let pos = offset;
    for (let i = 0; i < count; i++) {
      const nul = this.store.indexOf(0, pos);
      if (nul < 0) {
        throw new RpmFormatError(`tag ${tag}: string ${i} is not NUL-terminated inside the store`, where);
      }
      pos = nul + 1;
    }
    return pos - offset;
  }

  /** An immutable region (tag 62/63 first) ends with a trailer entry that must point back at the index. */
  private checkRegion(): void {
    const first = this.entries.values().next().value as IndexEntry | undefined;
    if (!first || (first.tag !== RegionTag.HEADERIMMUTABLE && first.tag !== RegionTag.HEADERSIGNATURES))
      return;
    const where = { file: this.file, offset: this.fileOffset + HEADER_INTRO_SIZE };
    if (first.type !== RpmType.BIN || first.count !== 16) {
      throw new RpmFormatError(`region tag ${first.tag} must be BIN with count 16`, where);
    }
    const tag = this.storeView.getInt32(first.offset + Entry.tag);
    const type = this.storeView.getUint32(first.offset + Entry.type);
    const back = -this.storeView.getInt32(first.offset + Entry.offset);
    const regionEntries = back / INDEX_ENTRY_SIZE;
    if (
      tag !== first.tag ||
      type !== RpmType.BIN ||
      !Number.isInteger(regionEntries) ||
      regionEntries < 1 ||
      regionEntries > this.indexCount
    ) {
      throw new RpmFormatError(`region ${first.tag} has a bad trailer`, {
        file: this.file,
        offset: this.fileOffset + HEADER_INTRO_SIZE + this.indexCount * INDEX_ENTRY_SIZE + first.offset,
      });
    }
  }

  has(tag: number): boolean {
    return this.entries.has(tag);
  }

  private where(entry: IndexEntry) {
    return {
      file: this.file,
      offset: this.fileOffset + HEADER_INTRO_SIZE + this.indexCount * INDEX_ENTRY_SIZE + entry.offset,
    };
  }

  private wrongType(entry: IndexEntry, expected: string): never {
    throw new RpmFormatError(
      `tag ${entry.tag} has type ${TYPE_NAMES[entry.type]}, expected ${expected}`,
      this.where(entry),
    );
  }

  /** Strings of a STRING, STRING_ARRAY or I18NSTRING entry. */
  strings(tag: number): string[] | undefined {
    const e = this.entries.get(tag);
    if (!e) return undefined;
    if (e.type !== RpmType.STRING && e.type !== RpmType.STRING_ARRAY && e.type !== RpmType.I18NSTRING) {
      this.wrongType(e, "a string type");
    }
    const out: string[] = [];
    let pos = e.offset;
    for (let i = 0; i < e.count; i++) {
      const nul = this.store.indexOf(0, pos);
      out.push(decoder.decode(this.store.subarray(pos, nul)));
      pos = nul + 1;
    }
    return out;
  }

  /** A single string (first of an array / first locale of an I18NSTRING). */
  string(tag: number): string | undefined {
    return this.strings(tag)?.[0];
  }

  /** Unsigned integers of a CHAR/INT8/INT16/INT32/INT64 entry (INT64 must fit in a safe integer). */
  numbers(tag: number): number[] | undefined {
    const e = this.entries.get(tag);
    if (!e) return undefined;
    const out = new Array<number>(e.count);
    const v = this.storeView;
    switch (e.type) {
      case RpmType.CHAR:
      case RpmType.INT8:
        for (let i = 0; i < e.count; i++) out[i] = v.getUint8(e.offset + i);
        return out;
      case RpmType.INT16:
        for (let i = 0; i < e.count; i++) out[i] = v.getUint16(e.offset + 2 * i);
        return out;
      case RpmType.INT32:
        for (let i = 0; i < e.count; i++) out[i] = v.getUint32(e.offset + 4 * i);
        return out;
      case RpmType.INT64:
        for (let i = 0; i < e.count; i++) {
          const big = v.getBigUint64(e.offset + 8 * i);
          if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
            throw new RpmFormatError(`tag ${tag}: 64-bit value ${big} too large`, this.where(e));
          }
          out[i] = Number(big);
        }
        return out;
      default:
        return this.wrongType(e, "an integer type");
    }
  }

  number(tag: number): number | undefined {
    return this.numbers(tag)?.[0];
  }

  /** Raw bytes of a BIN entry. */
  binary(tag: number): Uint8Array | undefined {
    const e = this.entries.get(tag);
    if (!e) return undefined;
    if (e.type !== RpmType.BIN) this.wrongType(e, "BIN");
    return this.store.subarray(e.offset, e.offset + e.length);
  }

  /** Store offset of a tag's value converted to an offset in the RPM file (for messages). */
  fileOffsetOf(tag: number): number | undefined {
    const e = this.entries.get(tag);
    return e ? this.where(e).offset : undefined;
  }
}
