/** CRC32C lives in @imgpatch/disk (XFS needs it too); re-exported here for ext4's modules. */
export { crc32c, crc32cU32, crc32cZeros } from "@imgpatch/disk";
