/**
 * Little helpers for reading on-disk structures out of a byte buffer. Every accessor is
 * bounds-checked by DataView, so a short buffer throws a RangeError instead of reading garbage;
 * callers check lengths first and turn that into a FormatError with the offset.
 */
export class ByteView {
  readonly dv: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.length;
  }

  u8(off: number): number {
    return this.dv.getUint8(off);
  }
  u16(off: number): number {
    return this.dv.getUint16(off, true);
  }
  u32(off: number): number {
    return this.dv.getUint32(off, true);
  }
  u64(off: number): bigint {
    return this.dv.getBigUint64(off, true);
  }
  u16be(off: number): number {
    return this.dv.getUint16(off, false);
  }
  u32be(off: number): number {
    return this.dv.getUint32(off, false);
  }
  u64be(off: number): bigint {
    return this.dv.getBigUint64(off, false);
  }

  /** True when the bytes at `off` equal `magic` (a latin1 string or bytes); false if out of range. */
  has(off: number, magic: string | Uint8Array): boolean {
    const m = typeof magic === "string" ? latin1(magic) : magic;
    if (off < 0 || off + m.length > this.bytes.length) return false;
    for (let i = 0; i < m.length; i++) if (this.bytes[off + i] !== m[i]) return false;
    return true;
  }

  slice(off: number, len: number): Uint8Array {
    return this.bytes.subarray(off, off + len);
  }

  /** A NUL-terminated / space-padded ASCII field, trimmed. Non-printable bytes become "?". */
  text(off: number, len: number, { trimSpaces = true } = {}): string {
    let s = "";
    for (let i = 0; i < len && off + i < this.bytes.length; i++) {
      const c = this.bytes[off + i];
      if (c === 0) break;
      s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : "?";
    }
    return trimSpaces ? s.replace(/ +$/, "") : s;
  }

  /** A NUL-terminated UTF-8 field. */
  utf8(off: number, len: number): string {
    const raw = this.bytes.subarray(off, Math.min(off + len, this.bytes.length));
    const end = raw.indexOf(0);
    return new TextDecoder("utf-8").decode(end < 0 ? raw : raw.subarray(0, end));
  }

  /** A NUL-terminated UTF-16LE field of `len` bytes. */
  utf16le(off: number, len: number): string {
    let s = "";
    for (let i = 0; i + 1 < len && off + i + 1 < this.bytes.length; i += 2) {
      const c = this.dv.getUint16(off + i, true);
      if (c === 0) break;
      s += String.fromCharCode(c);
    }
    return s;
  }

  isZero(off = 0, len = this.bytes.length - off): boolean {
    for (let i = off; i < off + len; i++) if (this.bytes[i] !== 0) return false;
    return true;
  }

  hex(off: number, len: number): string {
    let s = "";
    for (let i = 0; i < len; i++) s += this.bytes[off + i].toString(16).padStart(2, "0");
    return s;
  }
}

export function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}
