/**
 * @imgpatch/xfs — read and edit XFS filesystems (v4 and v5) on any BlockDevice, laid out like the
 * kernel's fs/xfs/libxfs: one module per on-disk structure or operation, one generic B+tree.
 */
export * from "./bytes.js";
export * from "./errors.js";
export * from "./sb.js";
// Space engine (helper S): generic B+tree, AG headers, buffers, extent and inode allocation.
export * from "./ag.js";
export * from "./alloc.js";
export * from "./btree.js";
export * from "./btree-alloc.js";
export * from "./btree-bmap.js";
export * from "./btree-ialloc.js";
export * from "./btree-refcount.js";
export * from "./btree-rmap.js";
export * from "./btree-update.js";
export * from "./buf.js";
export * from "./ialloc.js";
export * from "./refcount.js";
export * from "./rmap.js";
