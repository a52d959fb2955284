#!/usr/bin/env node
// qcow2-patch.mjs: small raw edits to qcow2 files made by qemu-img, for fixtures qemu cannot
// produce directly (field offsets from qemu's docs/interop/qcow2.txt).
//   snapshot-times <file> <epoch>    set every snapshot's date to <epoch> and its VM clock to 0
//                                    (qemu stamps the wall clock; this makes the file reproducible)
//   drop-l2 <file> <guest-offset>    clear the L2 entry mapping <guest-offset>: its data cluster
//                                    keeps refcount 1 with no user, a LEAK for qemu-img check
//   zero-refcount <file> <guest-offset>  set the refcount of the cluster holding <guest-offset> to
//                                    0 while the L2 entry still uses it: a CORRUPTION
import { closeSync, openSync, readSync, writeSync } from "node:fs";

const [cmd, file, arg] = process.argv.slice(2);
const fd = openSync(file, "r+");
const read = (off, len) => {
  const b = Buffer.alloc(len);
  if (readSync(fd, b, 0, len, off) !== len) throw new Error(`short read at ${off}`);
  return b;
};
const write = (off, b) => writeSync(fd, b, 0, b.length, off);
const u64 = (off) => Number(read(off, 8).readBigUInt64BE(0));

const header = read(0, 104);
if (header.readUInt32BE(0) !== 0x514649fb) throw new Error(`${file}: not qcow2`);
const clusterBits = header.readUInt32BE(20);
const clusterSize = 2 ** clusterBits;
const l1Offset = Number(header.readBigUInt64BE(40));
const refcountTableOffset = Number(header.readBigUInt64BE(48));
const nbSnapshots = header.readUInt32BE(60);
const snapshotsOffset = Number(header.readBigUInt64BE(64));
const version = header.readUInt32BE(4);
const refcountOrder = version >= 3 ? header.readUInt32BE(96) : 4;
const OFFSET_MASK = 0x00fffffffffffe00n;

function dataCluster(guest) {
  const l2Entries = clusterSize / 8;
  const l1Index = Math.floor(guest / clusterSize / l2Entries);
  const l2Index = Math.floor(guest / clusterSize) % l2Entries;
  const l2 = Number(BigInt(u64(l1Offset + l1Index * 8)) & OFFSET_MASK);
  if (l2 === 0) throw new Error(`guest offset ${guest} has no L2 table`);
  const entryOff = l2 + l2Index * 8;
  const host = Number(read(entryOff, 8).readBigUInt64BE(0) & OFFSET_MASK);
  if (host === 0) throw new Error(`guest offset ${guest} is not allocated`);
  return { entryOff, host };
}

if (cmd === "snapshot-times") {
  let off = snapshotsOffset;
  for (let i = 0; i < nbSnapshots; i++) {
    const h = read(off, 40);
    const idLen = h.readUInt16BE(12);
    const nameLen = h.readUInt16BE(14);
    const extra = h.readUInt32BE(36);
    const t = Buffer.alloc(16);
    t.writeUInt32BE(Number(arg), 0); // date_sec
    t.writeUInt32BE(0, 4); // date_nsec
    t.writeBigUInt64BE(0n, 8); // vm_clock_nsec
    write(off + 16, t);
    off += 40 + extra + idLen + nameLen;
    off = Math.ceil(off / 8) * 8;
  }
} else if (cmd === "drop-l2") {
  const { entryOff } = dataCluster(Number(arg));
  write(entryOff, Buffer.alloc(8));
} else if (cmd === "zero-refcount") {
  if (refcountOrder !== 4) throw new Error("zero-refcount handles 16-bit refcounts only");
  const { host } = dataCluster(Number(arg));
  const cluster = host / clusterSize;
  const perBlock = clusterSize / 2;
  const block = Number(BigInt(u64(refcountTableOffset + Math.floor(cluster / perBlock) * 8)) & ~0x1ffn);
  write(block + (cluster % perBlock) * 2, Buffer.alloc(2));
} else {
  throw new Error(`unknown command ${cmd}`);
}
closeSync(fd);
