/**
 * @imgpatch/xfs — read and edit XFS filesystems (v4 and v5) on any BlockDevice, laid out like the
 * kernel's fs/xfs/libxfs: one module per on-disk structure or operation, one generic B+tree.
 */

// Space engine (helper S): generic B+tree, AG headers, buffers, extent and inode allocation.
export * from "./ag.js";
export * from "./alloc.js";
export * from "./attr.js";
export * from "./attr-leaf.js";
export * from "./attr-remote.js";
export * from "./attr-sf.js";
export * from "./attr-write.js";
export * from "./bmap.js";
export * from "./btree.js";
export * from "./btree-alloc.js";
export * from "./btree-bmap.js";
export * from "./btree-ialloc.js";
export * from "./btree-refcount.js";
export * from "./btree-rmap.js";
export * from "./btree-update.js";
export * from "./buf.js";
export * from "./bytes.js";
export * from "./da-btree.js";
export * from "./dir-reading.js";
export * from "./dir2-block.js";
export * from "./dir2-data.js";
export * from "./dir2-hash.js";
export * from "./dir2-leaf.js";
export * from "./dir2-sf.js";
export * from "./dir2-write.js";
export * from "./editor.js";
export * from "./errors.js";
export * from "./file-write.js";
export * from "./fork.js";
export * from "./fork-reading.js";
export * from "./free-space.js";
export * from "./fs.js";
export * from "./ialloc.js";
export * from "./inode.js";
export * from "./inode-create.js";
export * from "./log.js";
export { type LogItem, type LogRecords, type LogTransaction, readLogTransactions } from "./log-records.js";
export { type LogReplay, type LogReplayStats, replayLogTransactions } from "./log-replay.js";
export { RecoveredDevice } from "./recovered-device.js";
export * from "./refcount.js";
export * from "./rename.js";
export * from "./rmap.js";
export * from "./sb.js";
export * from "./stats.js";
export * from "./symlink.js";
