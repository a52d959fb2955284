/**
 * RPM header tag numbers and value types (rpm's include/rpm/rpmtag.h), only the ones we read.
 */

/** Index entry data types. */
export const RpmType = {
  NULL: 0,
  CHAR: 1,
  INT8: 2,
  INT16: 3,
  INT32: 4,
  INT64: 5,
  STRING: 6,
  BIN: 7,
  STRING_ARRAY: 8,
  I18NSTRING: 9,
} as const;

/** Region tags: the first index entry of an immutable header points at a 16-byte trailer. */
export const RegionTag = {
  HEADERSIGNATURES: 62,
  HEADERIMMUTABLE: 63,
} as const;

/** Tags of the signature header. */
export const SigTag = {
  /** OpenPGP signatures over the main header (DSA: also EdDSA/ECDSA keys; RSA: RSA keys). */
  DSAHEADER: 267,
  RSAHEADER: 268,
  SHA1: 269,
  LONGSIZE: 270,
  LONGARCHIVESIZE: 271,
  SHA256: 273,
  /** rpm ≥ 4.19 / 6: base64 OpenPGP signatures over the main header (STRING_ARRAY). */
  OPENPGP: 278,
  /** rpm 6: SHA3-256 digest of the main header. */
  SHA3_256: 279,
  SIZE: 1000,
  /** Legacy OpenPGP signatures over header+payload (rpm ≤ 4.x, `rpmsign --rpmv3`). */
  PGP: 1002,
  MD5: 1004,
  GPG: 1005,
  PGP5: 1006,
  PAYLOADSIZE: 1007,
} as const;

/** Tags of the main header. */
export const Tag = {
  NAME: 1000,
  VERSION: 1001,
  RELEASE: 1002,
  EPOCH: 1003,
  SUMMARY: 1004,
  ARCH: 1022,
  PREIN: 1023,
  POSTIN: 1024,
  PREUN: 1025,
  POSTUN: 1026,
  OLDFILENAMES: 1027,
  FILESIZES: 1028,
  FILEMODES: 1030,
  FILEUIDS: 1031,
  FILEGIDS: 1032,
  FILERDEVS: 1033,
  FILEMTIMES: 1034,
  FILEDIGESTS: 1035,
  FILELINKTOS: 1036,
  FILEFLAGS: 1037,
  FILEUSERNAME: 1039,
  FILEGROUPNAME: 1040,
  ARCHIVESIZE: 1046,
  PROVIDENAME: 1047,
  REQUIREFLAGS: 1048,
  REQUIRENAME: 1049,
  REQUIREVERSION: 1050,
  TRIGGERSCRIPTS: 1065,
  TRIGGERNAME: 1066,
  TRIGGERVERSION: 1067,
  TRIGGERFLAGS: 1068,
  TRIGGERINDEX: 1069,
  VERIFYSCRIPT: 1079,
  PREINPROG: 1085,
  POSTINPROG: 1086,
  PREUNPROG: 1087,
  POSTUNPROG: 1088,
  TRIGGERSCRIPTPROG: 1092,
  FILEDEVICES: 1095,
  FILEINODES: 1096,
  PROVIDEFLAGS: 1112,
  PROVIDEVERSION: 1113,
  DIRINDEXES: 1116,
  BASENAMES: 1117,
  DIRNAMES: 1118,
  PAYLOADFORMAT: 1124,
  PAYLOADCOMPRESSOR: 1125,
  PAYLOADFLAGS: 1126,
  PRETRANS: 1151,
  POSTTRANS: 1152,
  PRETRANSPROG: 1153,
  POSTTRANSPROG: 1154,
  LONGFILESIZES: 5008,
  LONGSIZE: 5009,
  FILECAPS: 5010,
  FILEDIGESTALGO: 5011,
  PREINFLAGS: 5020,
  POSTINFLAGS: 5021,
  PREUNFLAGS: 5022,
  POSTUNFLAGS: 5023,
  PRETRANSFLAGS: 5024,
  POSTTRANSFLAGS: 5025,
  FILETRIGGERNAME: 5069,
  TRANSFILETRIGGERNAME: 5079,
  PAYLOADDIGEST: 5092,
  PAYLOADDIGESTALGO: 5093,
  PAYLOADDIGESTALT: 5097,
  /** rpm 6: package format version (6); absent in v3/v4 packages. */
  RPMFORMAT: 5114,
} as const;

/** FILEFLAGS bits (include/rpm/rpmfiles.h). */
export const FileFlag = {
  CONFIG: 1 << 0,
  DOC: 1 << 1,
  ICON: 1 << 2,
  MISSINGOK: 1 << 3,
  NOREPLACE: 1 << 4,
  SPECFILE: 1 << 5,
  GHOST: 1 << 6,
  LICENSE: 1 << 7,
  README: 1 << 8,
  PUBKEY: 1 << 11,
  ARTIFACT: 1 << 12,
} as const;

/** Dependency sense bits (include/rpm/rpmds.h) used to print requires/provides and trigger kinds. */
export const Sense = {
  LESS: 1 << 1,
  GREATER: 1 << 2,
  EQUAL: 1 << 3,
  PREREQ: 1 << 6,
  TRIGGERIN: 1 << 16,
  TRIGGERUN: 1 << 17,
  TRIGGERPOSTUN: 1 << 18,
  RPMLIB: 1 << 24,
  TRIGGERPREIN: 1 << 25,
} as const;

/** Digest algorithm numbers used by FILEDIGESTALGO and PAYLOADDIGESTALGO (OpenPGP hash ids). */
export const DigestAlgo: Record<number, { name: string; node: string; hexLength: number }> = {
  1: { name: "md5", node: "md5", hexLength: 32 },
  2: { name: "sha1", node: "sha1", hexLength: 40 },
  8: { name: "sha256", node: "sha256", hexLength: 64 },
  9: { name: "sha384", node: "sha384", hexLength: 96 },
  10: { name: "sha512", node: "sha512", hexLength: 128 },
  11: { name: "sha224", node: "sha224", hexLength: 56 },
  // rpm 6 (v6 packages) adds SHA-3.
  12: { name: "sha3-256", node: "sha3-256", hexLength: 64 },
  14: { name: "sha3-512", node: "sha3-512", hexLength: 128 },
};
