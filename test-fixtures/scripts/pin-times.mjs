#!/usr/bin/env node
// pin-times.mjs <manifest.json.gz> <inode-size> <epoch>: debugfs commands (stdout) that make
// the inode times of an image made by mke2fs -d match the source tree exactly:
//  - ctime and atime: mke2fs copies them from the host, where ctime is "now" and reading the
//    tree moves atime; pin both to <epoch> so the images are reproducible;
//  - mtime: mke2fs -d drops the nanoseconds and the post-2038 epoch bits; write the full value
//    from the manifest (when the inode has room for the extra field).
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

const [manifestPath, isizeArg, epochArg] = process.argv.slice(2);
const big = Number(isizeArg) > 128;
const epoch = Number(epochArg);
const m = JSON.parse(gunzipSync(readFileSync(manifestPath)).toString("utf8"));
const q = (p) => `"${p.replaceAll('"', '""')}"`;
const lines = [];
const pin = (path, mtime) => {
  lines.push(`sif ${q(path)} ctime @${epoch}`, `sif ${q(path)} atime @${epoch}`);
  if (big) lines.push(`sif ${q(path)} ctime_extra 0`, `sif ${q(path)} atime_extra 0`);
  if (!mtime) return;
  // On disk: a signed 32-bit seconds field, plus (in the extra field) 2 epoch bits and the ns.
  const lo = ((mtime.sec % 2 ** 32) + 2 ** 32) % 2 ** 32;
  const signedLo = lo >= 2 ** 31 ? lo - 2 ** 32 : lo;
  const epochBits = (mtime.sec - signedLo) / 2 ** 32;
  if (!big && (epochBits !== 0 || mtime.sec < -(2 ** 31))) return; // cannot be represented
  lines.push(`sif ${q(path)} mtime @${signedLo}`);
  if (big) lines.push(`sif ${q(path)} mtime_extra ${((mtime.nsec * 4) | (epochBits & 3)) >>> 0}`);
};
for (const e of m.entries) pin(e.path, e.mtime);
pin("/lost+found");
process.stdout.write(`${lines.join("\n")}\n`);
