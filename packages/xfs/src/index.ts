/**
 * @imgpatch/xfs — read and edit XFS filesystems (v4 and v5) on any BlockDevice, laid out like the
 * kernel's fs/xfs/libxfs: one module per on-disk structure or operation, one generic B+tree.
 */
export * from "./bytes.js";
export * from "./errors.js";
export * from "./sb.js";
