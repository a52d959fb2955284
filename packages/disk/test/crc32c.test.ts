/**
 * crc32c's shortcuts (a zero tail shifted in O(log n), crc32cZeros) against the plain byte-wise
 * definition of the reflected CRC-32C register, on random data with zero tails of every alignment,
 * and the standard check value ("123456789" → 0xE3069283).
 */
import { describe, expect, it } from "vitest";
import { crc32c, crc32cZeros } from "../src/crc32c.js";

/** The definition: one bit at a time, no tables. */
function reference(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = crc >>> 0;
  for (let i = start; i < end; i++) {
    c ^= data[i];
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return c >>> 0;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

describe("crc32c", () => {
  it("gives the standard check value", () => {
    const v = crc32c(0xffffffff, new TextEncoder().encode("123456789")) ^ 0xffffffff;
    expect(v >>> 0).toBe(0xe3069283);
  });

  it("matches the bitwise definition on blocks with zero tails of every length and alignment", () => {
    const r = rng(1);
    const buf = new Uint8Array(5000);
    let cases = 0;
    for (let t = 0; t < 400; t++) {
      const start = r() % 9;
      const end = start + 200 + (r() % 4700);
      const dataEnd = start + (r() % (end - start + 1));
      buf.fill(0);
      for (let i = start; i < dataEnd; i++) buf[i] = r() & 0xff;
      // Zero bytes inside the data too (a zero run that is not the tail).
      if (dataEnd - start > 40) buf.fill(0, start + 10, start + 30);
      const seed = r();
      // Views at odd byte offsets exercise the unaligned edges of the word scan.
      const off = r() % 4;
      const view = new Uint8Array(buf.buffer, off, buf.length - off);
      const s = Math.max(0, start - off);
      const e = Math.min(view.length, end - off);
      expect(crc32c(seed, view, s, e), `case ${t}`).toBe(reference(seed, view, s, e));
      cases++;
    }
    expect(cases).toBe(400);
  });

  it("crc32cZeros equals the crc of that many zero bytes", () => {
    const r = rng(2);
    for (const len of [0, 1, 3, 4, 7, 255, 256, 4084, 4096, 65536, 1 << 20]) {
      const seed = r();
      expect(crc32cZeros(seed, len), `len ${len}`).toBe(reference(seed, new Uint8Array(len)));
    }
  });
});
