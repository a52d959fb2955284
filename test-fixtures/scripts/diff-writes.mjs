#!/usr/bin/env node
// diff-writes.mjs <base.raw> <modified.raw> <chunk-dir> <unit>: qemu-io commands (stdout) that
// turn an overlay of <base> into <modified> by writing only the <unit>-sized blocks that differ,
// each run of them from a chunk file ("write -s <chunk> <offset> <length>").
import { closeSync, openSync, readSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [basePath, modPath, chunkDir, unitArg] = process.argv.slice(2);
const unit = Number(unitArg);
const size = statSync(modPath).size;
if (statSync(basePath).size !== size) throw new Error("sizes differ");
const a = openSync(basePath, "r");
const b = openSync(modPath, "r");
const ba = Buffer.alloc(unit);
const bb = Buffer.alloc(unit);
const cmds = [];
let run = null; // { off, bufs }
const flush = () => {
  if (!run) return;
  const chunk = join(chunkDir, `chunk-${cmds.length}`);
  const data = Buffer.concat(run.bufs);
  writeFileSync(chunk, data);
  cmds.push(`write -q -s ${chunk} ${run.off} ${data.length}`);
  run = null;
};
for (let off = 0; off < size; off += unit) {
  const len = Math.min(unit, size - off);
  readSync(a, ba, 0, len, off);
  readSync(b, bb, 0, len, off);
  if (ba.subarray(0, len).equals(bb.subarray(0, len))) flush();
  else {
    if (!run) run = { off, bufs: [] };
    run.bufs.push(Buffer.from(bb.subarray(0, len)));
  }
}
flush();
closeSync(a);
closeSync(b);
process.stdout.write(`${cmds.join("\n")}\n`);
