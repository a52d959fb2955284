/**
 * @imgpatch/ext4 — read (and, in the editor, write) ext2/3/4 filesystems on any BlockDevice.
 * The structure modules export pure parse/encode/checksum functions over bytes; Ext4Fs ties them
 * into a node:fs/promises-shaped reader.
 */

export * from "./alloc.js";
export * from "./block-map.js";
export * from "./block-store.js";
export * from "./bytes.js";
export * from "./crc16.js";
export * from "./crc32c.js";
export * from "./dir-write.js";
export * from "./dirent.js";
export * from "./dx-hash.js";
export * from "./editor.js";
export * from "./errors.js";
export * from "./extent.js";
export * from "./features.js";
export * from "./file-map.js";
export * from "./free-space.js";
export * from "./fs.js";
export * from "./group-desc.js";
export * from "./htree.js";
export * from "./inline-data.js";
export * from "./inode.js";
export * from "./journal.js";
export * from "./journal-fc.js";
export * from "./journal-replay.js";
export * from "./journal-scan.js";
export * from "./lru.js";
export { buildQuotaFile, parseQuotaFile, type QuotaFile } from "./quota.js";
export * from "./replay-device.js";
export * from "./stats.js";
export * from "./superblock.js";
export * from "./xattr.js";
export * from "./xattr-write.js";
