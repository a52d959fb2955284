#!/usr/bin/env node
// Deterministic, recognisable file contents, written to stdout.
//   pattern.mjs blocks <bytes> <tag>   every 1 KiB unit starts with "<tag> block <n>" and is
//                                      filled with a fixed pseudo-random run (so a misplaced or
//                                      missing block of any fs block size is detectable, yet gzip
//                                      and qcow2's 4 KiB-window deflate both shrink it well)
//   pattern.mjs sectors <bytes> <tag>  the same per 512-byte sector
//   pattern.mjs text <bytes> <tag>     readable lines
import { writeSync } from "node:fs";

const [kind, bytesArg, tag = "imgpatch"] = process.argv.slice(2);
const total = Number(bytesArg);
if (!Number.isSafeInteger(total) || total < 0) throw new Error(`bad size ${bytesArg}`);

function filler(len, seed) {
  // xorshift32: the same bytes on every machine and Node version
  const b = Buffer.alloc(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

function unitPattern(unit) {
  const fill = filler(unit, 0x1234567);
  const out = Buffer.alloc(total);
  for (let off = 0, n = 0; off < total; off += unit, n++) {
    const u = Buffer.from(fill);
    Buffer.from(`${tag} ${unit === 512 ? "sector" : "block"} ${String(n).padStart(8, "0")}\n`).copy(u);
    u.copy(out, off, 0, Math.min(unit, total - off));
  }
  return out;
}

let data;
if (kind === "blocks") data = unitPattern(1024);
else if (kind === "sectors") data = unitPattern(512);
else if (kind === "text") {
  let s = "";
  for (let i = 0; s.length < total; i++)
    s += `${tag} line ${i}: the quick brown fox jumps over the lazy dog\n`;
  data = Buffer.from(s.slice(0, total));
} else throw new Error(`unknown pattern kind ${kind}`);

for (let off = 0; off < data.length; ) off += writeSync(1, data, off, Math.min(1 << 20, data.length - off));
