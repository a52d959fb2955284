/**
 * A small RPM writer for tests: builds packages rpmbuild cannot make here (v3 OLDFILENAMES, the
 * stripped 07070X cpio of v6, LONGFILESIZES, no payload digest, huge zero-filled files) and hostile
 * ones (bad paths, lying digests).
 */
import { createHash } from "node:crypto";
import { Gzip } from "fflate";
import { RpmType, SigTag, Tag } from "../src/index.js";

export interface SynthFile {
  path: string;
  /** Full st_mode. */
  mode: number;
  content?: Uint8Array;
  /** Content of this many zero bytes, generated in chunks (for huge files). */
  zeros?: number;
  link?: string;
  user?: string;
  group?: string;
  mtime?: number;
  flags?: number;
  inode?: number;
  rdev?: number;
  /** Overrides the computed digest (to build lying packages). */
  digest?: string;
  /** When false, no payload entry is written for this file. */
  inPayload?: boolean;
}

export interface SynthOptions {
  name?: string;
  files: SynthFile[];
  /** v3: OLDFILENAMES, no region; v4 (default); v6: RPMFORMAT tag and stripped payload. */
  format?: 3 | 4 | 6;
  stripped?: boolean;
  compressor?: "gzip" | "none" | string;
  payloadDigest?: boolean;
  headerDigest?: boolean;
  longSizes?: boolean;
  /** v6-style SHA-3: SHA3-256 header digest (sig tag 279) and SHA3-256 payload/file digests (algo 12). */
  sha3?: boolean;
  /** Write "070702" entries with the byte-sum checksum (wrong sums when "bad"). */
  crc?: boolean | "bad";
  /** Raw names in the payload (instead of "./path"). */
  payloadNames?: Record<string, string>;
  extraTags?: { tag: number; type: number; value: string | string[] | number[] | Uint8Array }[];
}

type Value = string | string[] | number[] | Uint8Array;
interface HEntry {
  tag: number;
  type: number;
  value: Value;
}

const enc = new TextEncoder();

export function buildHeader(entries: HEntry[], region?: number): Uint8Array {
  const sorted = [...entries].sort((a, b) => a.tag - b.tag);
  const store: number[] = [];
  const index: { tag: number; type: number; offset: number; count: number }[] = [];
  const align = (n: number) => {
    while (store.length % n !== 0) store.push(0);
  };
  for (const e of sorted) {
    let count: number;
    const v = e.value;
    switch (e.type) {
      case RpmType.INT16:
        align(2);
        break;
      case RpmType.INT32:
        align(4);
        break;
      case RpmType.INT64:
        align(8);
        break;
    }
    const offset = store.length;
    if (e.type === RpmType.STRING || e.type === RpmType.STRING_ARRAY || e.type === RpmType.I18NSTRING) {
      const arr = Array.isArray(v) ? (v as string[]) : [v as string];
      for (const s of arr) store.push(...enc.encode(s), 0);
      count = arr.length;
    } else if (e.type === RpmType.BIN) {
      store.push(...(v as Uint8Array));
      count = (v as Uint8Array).length;
    } else {
      const nums = v as number[];
      const size =
        e.type === RpmType.INT16 ? 2 : e.type === RpmType.INT32 ? 4 : e.type === RpmType.INT64 ? 8 : 1;
      for (const n of nums) {
        const b = new Uint8Array(size);
        const dv = new DataView(b.buffer);
        if (size === 1) dv.setUint8(0, n);
        else if (size === 2) dv.setUint16(0, n);
        else if (size === 4) dv.setUint32(0, n);
        else dv.setBigUint64(0, BigInt(n));
        store.push(...b);
      }
      count = nums.length;
    }
    index.push({ tag: e.tag, type: e.type, offset, count });
  }
  if (region !== undefined) {
    // Region entry first, pointing at a trailer placed at the end of the store.
    const trailerOffset = store.length;
    const n = index.length + 1;
    const trailer = new Uint8Array(16);
    const dv = new DataView(trailer.buffer);
    dv.setInt32(0, region);
    dv.setUint32(4, RpmType.BIN);
    dv.setInt32(8, -n * 16);
    dv.setUint32(12, 16);
    store.push(...trailer);
    index.unshift({ tag: region, type: RpmType.BIN, offset: trailerOffset, count: 16 });
  }
  const out = new Uint8Array(16 + index.length * 16 + store.length);
  const dv = new DataView(out.buffer);
  out.set([0x8e, 0xad, 0xe8, 0x01], 0);
  dv.setUint32(8, index.length);
  dv.setUint32(12, store.length);
  index.forEach((e, i) => {
    const at = 16 + i * 16;
    dv.setInt32(at, e.tag);
    dv.setUint32(at + 4, e.type);
    dv.setInt32(at + 8, e.offset);
    dv.setUint32(at + 12, e.count);
  });
  out.set(store, 16 + index.length * 16);
  return out;
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function* zeroChunks(n: number): Iterable<Uint8Array> {
  const chunk = new Uint8Array(1 << 20);
  for (let left = n; left > 0; left -= chunk.length)
    yield left >= chunk.length ? chunk : chunk.subarray(0, left);
}

function contentChunks(f: SynthFile): Iterable<Uint8Array> {
  if (f.zeros !== undefined) return zeroChunks(f.zeros);
  if (f.link !== undefined) return [enc.encode(f.link)];
  return f.content ? [f.content] : [];
}

function sizeOf(f: SynthFile): number {
  if (f.zeros !== undefined) return f.zeros;
  if (f.link !== undefined) return enc.encode(f.link).length;
  return f.content?.length ?? 0;
}

/** Payload pieces (uncompressed cpio) as a generator, so huge files never sit in memory. */
function* cpioPieces(opts: SynthOptions): Iterable<Uint8Array> {
  let pos = 0;
  const pad = function* () {
    const n = (4 - (pos % 4)) % 4;
    if (n > 0) {
      pos += n;
      yield new Uint8Array(n);
    }
  };
  const emit = function* (b: Uint8Array) {
    pos += b.length;
    yield b;
  };
  const byteSum = (f: SynthFile | undefined) => {
    let sum = 0;
    if (f) for (const c of contentChunks(f)) for (const b of c) sum = (sum + b) >>> 0;
    return opts.crc === "bad" ? (sum + 1) >>> 0 : sum;
  };
  const newc = function* (name: string, f: SynthFile | undefined, ino: number, size: number) {
    const nameBytes = enc.encode(name);
    const fields = [
      ino,
      f?.mode ?? 0,
      0,
      0,
      1,
      f?.mtime ?? 0,
      size,
      0,
      0,
      ((f?.rdev ?? 0) >> 8) & 0xff,
      (f?.rdev ?? 0) & 0xff,
      nameBytes.length + 1,
      opts.crc && size > 0 ? byteSum(f) : 0,
    ];
    yield* emit(enc.encode(`${opts.crc ? "070702" : "070701"}${fields.map(hex8).join("")}`));
    yield* emit(new Uint8Array([...nameBytes, 0]));
    yield* pad();
  };
  const stripped = opts.stripped ?? opts.format === 6;
  // Like rpm: in a hard-link set (same inode) only the last member carries the content.
  const lastOfInode = new Map<number, number>();
  opts.files.forEach((f, i) => {
    if (f.inode !== undefined) lastOfInode.set(f.inode, i);
  });
  for (let i = 0; i < opts.files.length; i++) {
    const f = opts.files[i];
    if (f.inPayload === false || ((f.flags ?? 0) & 64) !== 0) continue;
    const type = f.mode & 0o170000;
    const hasData =
      type === 0o120000 || (type === 0o100000 && (f.inode === undefined || lastOfInode.get(f.inode) === i));
    if (stripped) {
      yield* emit(enc.encode(`07070X${hex8(i)}`));
      yield* pad();
    } else {
      const name = opts.payloadNames?.[f.path] ?? `.${f.path}`;
      yield* newc(name, f, i + 1, hasData ? sizeOf(f) : 0);
    }
    if (hasData) {
      for (const c of contentChunks(f)) yield* emit(c);
      yield* pad();
    }
  }
  yield* newc("TRAILER!!!", undefined, 0, 0);
}

function gzipAll(pieces: Iterable<Uint8Array>): Uint8Array {
  const out: Uint8Array[] = [];
  const g = new Gzip({ level: 1 }, (d) => {
    out.push(d);
  });
  for (const p of pieces) g.push(p);
  g.push(new Uint8Array(0), true);
  return Buffer.concat(out);
}

function digestOf(f: SynthFile, sha3 = false): string {
  if ((f.mode & 0o170000) !== 0o100000) return "";
  if (f.digest !== undefined) return f.digest;
  const h = createHash(sha3 ? "sha3-256" : "sha256");
  for (const c of contentChunks(f)) h.update(c);
  return h.digest("hex");
}

/** Builds a complete RPM in memory (the compressed payload of huge zero files stays small). */
export function buildRpm(opts: SynthOptions): Uint8Array {
  const format = opts.format ?? 4;
  const files = opts.files;
  const compressor = opts.compressor ?? "gzip";
  const payload =
    compressor === "gzip"
      ? gzipAll(cpioPieces(opts))
      : Buffer.concat([...cpioPieces(opts)].map((p) => Uint8Array.from(p)));

  const e: HEntry[] = [
    { tag: Tag.NAME, type: RpmType.STRING, value: opts.name ?? "synth" },
    { tag: Tag.VERSION, type: RpmType.STRING, value: "1.0" },
    { tag: Tag.RELEASE, type: RpmType.STRING, value: "1" },
    { tag: Tag.ARCH, type: RpmType.STRING, value: "noarch" },
    { tag: Tag.PAYLOADFORMAT, type: RpmType.STRING, value: "cpio" },
    { tag: Tag.FILEDIGESTALGO, type: RpmType.INT32, value: [opts.sha3 ? 12 : 8] },
  ];
  if (compressor !== "none") e.push({ tag: Tag.PAYLOADCOMPRESSOR, type: RpmType.STRING, value: compressor });
  if (format === 6) e.push({ tag: Tag.RPMFORMAT, type: RpmType.INT32, value: [6] });
  if (files.length > 0) {
    if (format === 3) {
      e.push({ tag: Tag.OLDFILENAMES, type: RpmType.STRING_ARRAY, value: files.map((f) => f.path) });
    } else {
      const dirs: string[] = [];
      const idx: number[] = [];
      const base: string[] = [];
      for (const f of files) {
        const cut = f.path.lastIndexOf("/") + 1;
        const d = f.path.slice(0, cut);
        if (!dirs.includes(d)) dirs.push(d);
        idx.push(dirs.indexOf(d));
        base.push(f.path.slice(cut));
      }
      e.push({ tag: Tag.DIRNAMES, type: RpmType.STRING_ARRAY, value: dirs });
      e.push({ tag: Tag.DIRINDEXES, type: RpmType.INT32, value: idx });
      e.push({ tag: Tag.BASENAMES, type: RpmType.STRING_ARRAY, value: base });
    }
    const sizes = files.map((f) => ((f.mode & 0o170000) === 0o040000 ? 4096 : sizeOf(f)));
    if (opts.longSizes ?? sizes.some((s) => s > 0xffffffff)) {
      e.push({ tag: Tag.LONGFILESIZES, type: RpmType.INT64, value: sizes });
    } else e.push({ tag: Tag.FILESIZES, type: RpmType.INT32, value: sizes });
    e.push({ tag: Tag.FILEMODES, type: RpmType.INT16, value: files.map((f) => f.mode) });
    e.push({ tag: Tag.FILEMTIMES, type: RpmType.INT32, value: files.map((f) => f.mtime ?? 1700000000) });
    e.push({
      tag: Tag.FILEDIGESTS,
      type: RpmType.STRING_ARRAY,
      value: files.map((f) => digestOf(f, opts.sha3)),
    });
    e.push({ tag: Tag.FILELINKTOS, type: RpmType.STRING_ARRAY, value: files.map((f) => f.link ?? "") });
    e.push({ tag: Tag.FILEFLAGS, type: RpmType.INT32, value: files.map((f) => f.flags ?? 0) });
    e.push({ tag: Tag.FILEUSERNAME, type: RpmType.STRING_ARRAY, value: files.map((f) => f.user ?? "root") });
    e.push({
      tag: Tag.FILEGROUPNAME,
      type: RpmType.STRING_ARRAY,
      value: files.map((f) => f.group ?? "root"),
    });
    e.push({ tag: Tag.FILEINODES, type: RpmType.INT32, value: files.map((f, i) => f.inode ?? i + 1) });
    e.push({ tag: Tag.FILEDEVICES, type: RpmType.INT32, value: files.map(() => 1) });
    e.push({ tag: Tag.FILERDEVS, type: RpmType.INT16, value: files.map((f) => f.rdev ?? 0) });
  }
  if (opts.payloadDigest ?? true) {
    e.push({
      tag: Tag.PAYLOADDIGEST,
      type: RpmType.STRING_ARRAY,
      value: [
        createHash(opts.sha3 ? "sha3-256" : "sha256")
          .update(payload)
          .digest("hex"),
      ],
    });
    e.push({ tag: Tag.PAYLOADDIGESTALGO, type: RpmType.INT32, value: [opts.sha3 ? 12 : 8] });
  }
  for (const x of opts.extraTags ?? []) e.push({ tag: x.tag, type: x.type, value: x.value as Value });
  const header = buildHeader(e, format === 3 ? undefined : 63);

  const sig: HEntry[] = [{ tag: SigTag.SIZE, type: RpmType.INT32, value: [header.length + payload.length] }];
  if (opts.headerDigest ?? true) {
    sig.push({
      tag: SigTag.SHA256,
      type: RpmType.STRING,
      value: createHash("sha256").update(header).digest("hex"),
    });
    if (opts.sha3) {
      const value = createHash("sha3-256").update(header).digest("hex");
      sig.push({ tag: SigTag.SHA3_256, type: RpmType.STRING, value });
    }
  }
  const sigHeader = buildHeader(sig, 62);
  const sigPadded = new Uint8Array((sigHeader.length + 7) & ~7);
  sigPadded.set(sigHeader);

  const lead = new Uint8Array(96);
  lead.set([0xed, 0xab, 0xee, 0xdb, 3, 0], 0);
  lead.set(enc.encode(`${opts.name ?? "synth"}-1.0-1`).subarray(0, 65), 10);
  new DataView(lead.buffer).setUint16(78, 5);
  return Buffer.concat([lead, sigPadded, header, payload]);
}

export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
