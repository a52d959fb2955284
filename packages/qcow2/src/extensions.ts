import { viewOf } from "./bytes.js";
import { Qcow2FormatError } from "./errors.js";

/**
 * Header extensions: a list of {type u32, length u32, data, zero padding to 8} records that
 * follow the fixed header inside cluster 0 and end with a type-0 record.
 */
export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO_HEADER = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export interface HeaderExtension {
  type: number;
  /** Offset of the extension record (its type field) in the file. */
  offset: number;
  data: Uint8Array;
}

export interface FeatureName {
  /** 0 incompatible, 1 compatible, 2 autoclear. */
  type: number;
  bit: number;
  name: string;
}

export interface BitmapsExtension {
  nbBitmaps: number;
  directorySize: number;
  directoryOffset: number;
}

/** Parsed view of the extensions we understand (unknown ones are kept raw in `all`). */
export interface Qcow2Extensions {
  all: HeaderExtension[];
  backingFormat?: string;
  featureNames: FeatureName[];
  bitmaps?: BitmapsExtension;
  cryptoHeader?: { offset: number; length: number };
  dataFile?: string;
  /** First byte after the end marker: the earliest place a backing file name may start. */
  end: number;
}

const decoder = new TextDecoder("utf-8", { fatal: false });

/** Parse the extension area of `cluster0` starting at `headerLength`, up to `limit`. */
export function parseExtensions(cluster0: Uint8Array, headerLength: number, limit: number, file: string) {
  const view = viewOf(cluster0);
  const out: Qcow2Extensions = { all: [], featureNames: [], end: headerLength };
  const seen = new Set<number>();
  let pos = headerLength;
  for (;;) {
    if (pos + 8 > limit) {
      // qemu tolerates a missing end marker when the area is exhausted.
      out.end = pos;
      break;
    }
    const type = view.getUint32(pos);
    const len = view.getUint32(pos + 4);
    if (type === EXT_END) {
      out.end = pos + 8;
      break;
    }
    const dataAt = pos + 8;
    if (len > limit - dataAt) {
      throw new Qcow2FormatError(
        `header extension 0x${type.toString(16)}`,
        `length ${len} runs past the extension area (ends at ${limit})`,
        { file, offset: pos + 4 },
      );
    }
    const data = cluster0.slice(dataAt, dataAt + len);
    const where = { file, offset: pos };
    if (seen.has(type) && type !== EXT_FEATURE_TABLE) {
      throw new Qcow2FormatError(`header extension 0x${type.toString(16)}`, "appears twice", where);
    }
    seen.add(type);
    out.all.push({ type, offset: pos, data });
    switch (type) {
      case EXT_BACKING_FORMAT:
        out.backingFormat = decoder.decode(data);
        break;
      case EXT_FEATURE_TABLE:
        for (let i = 0; i + 48 <= len; i += 48) {
          const raw = data.subarray(i + 2, i + 48);
          const nul = raw.indexOf(0);
          out.featureNames.push({
            type: data[i]!,
            bit: data[i + 1]!,
            name: decoder.decode(nul < 0 ? raw : raw.subarray(0, nul)),
          });
        }
        break;
      case EXT_BITMAPS: {
        if (len < 24) throw new Qcow2FormatError("bitmaps extension", `length ${len} < 24`, where);
        const v = viewOf(data);
        const dirSize = Number(v.getBigUint64(8));
        const dirOffset = Number(v.getBigUint64(16));
        out.bitmaps = { nbBitmaps: v.getUint32(0), directorySize: dirSize, directoryOffset: dirOffset };
        break;
      }
      case EXT_CRYPTO_HEADER: {
        if (len < 16) throw new Qcow2FormatError("crypto header extension", `length ${len} < 16`, where);
        const v = viewOf(data);
        out.cryptoHeader = { offset: Number(v.getBigUint64(0)), length: Number(v.getBigUint64(8)) };
        break;
      }
      case EXT_DATA_FILE:
        out.dataFile = decoder.decode(data);
        break;
      default:
        break; // unknown extensions are ignorable by definition
    }
    pos = dataAt + Math.ceil(len / 8) * 8;
  }
  return out;
}

/** Serialise extension records (padding each to 8 bytes) followed by the end marker. */
export function serializeExtensions(exts: readonly { type: number; data: Uint8Array }[]): Uint8Array {
  let total = 8;
  for (const e of exts) total += 8 + Math.ceil(e.data.length / 8) * 8;
  const out = new Uint8Array(total);
  const view = viewOf(out);
  let pos = 0;
  for (const e of exts) {
    view.setUint32(pos, e.type);
    view.setUint32(pos + 4, e.data.length);
    out.set(e.data, pos + 8);
    pos += 8 + Math.ceil(e.data.length / 8) * 8;
  }
  // end marker: 8 zero bytes already there
  return out;
}

export function stringExtension(type: number, value: string): { type: number; data: Uint8Array } {
  return { type, data: new TextEncoder().encode(value) };
}

/** The feature name table qemu writes into new v3 images. */
export const DEFAULT_FEATURE_NAMES: readonly FeatureName[] = [
  { type: 0, bit: 0, name: "dirty bit" },
  { type: 0, bit: 1, name: "corrupt bit" },
  { type: 0, bit: 2, name: "external data file" },
  { type: 0, bit: 3, name: "compression type" },
  { type: 0, bit: 4, name: "extended L2 entries" },
  { type: 1, bit: 0, name: "lazy refcounts" },
  { type: 2, bit: 0, name: "bitmaps" },
  { type: 2, bit: 1, name: "raw external data" },
];

export function featureTableExtension(names: readonly FeatureName[]): { type: number; data: Uint8Array } {
  const data = new Uint8Array(names.length * 48);
  const enc = new TextEncoder();
  names.forEach((f, i) => {
    data[i * 48] = f.type;
    data[i * 48 + 1] = f.bit;
    data.set(enc.encode(f.name).subarray(0, 46), i * 48 + 2);
  });
  return { type: EXT_FEATURE_TABLE, data };
}

/** Name of a feature bit from the image's own table, for error messages. */
export function featureName(names: readonly FeatureName[], type: number, bit: number): string | undefined {
  return names.find((f) => f.type === type && f.bit === bit)?.name;
}
