/**
 * Friendly names for the partition types a user is likely to meet in a cloud or VM image.
 * Deliberately not exhaustive: an unknown type is shown by its id, which is always exact.
 */

/** GPT partition type GUIDs (lowercase) → name. */
export const GPT_TYPE_NAMES: Readonly<Record<string, string>> = {
  "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System",
  "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
  "024dee41-33e7-11d3-9d69-0008c781f39f": "MBR partition scheme",
  "9e1a2d38-c612-4316-aa26-8b49521e5a8b": "PowerPC PReP boot",
  "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
  "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
  "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
  "a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID",
  "933ac7e1-2eb4-4f13-b844-0e14e2aef915": "Linux home",
  "3b8f8425-20e0-4f3b-907f-1a25a76f98e8": "Linux server data",
  "4d21b016-b534-45c2-a9fb-5c16e091fd2d": "Linux variable data",
  "7ec6f557-3bc5-4aca-b293-16ef5df639d1": "Linux temporary data",
  "8da63339-0007-60c0-c436-083ac8230908": "Linux reserved",
  "bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
  "ca7d7ccb-63ed-4c53-861c-1742536059cc": "Linux LUKS",
  "44479540-f297-41b2-9af7-d131d5f0458a": "Linux root (x86)",
  "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
  "69dad710-2ce4-4e3c-b16c-21a1d49abed3": "Linux root (ARM)",
  "b921b045-1df0-41c3-af44-4c6f280d3fae": "Linux root (ARM-64)",
  "72ec70a6-cf74-40e6-bd49-4bda08e8f224": "Linux root (RISC-V-64)",
  "c31c45e6-3f39-412e-80fb-4809c4980599": "Linux root (PPC64LE)",
  "5eead9a9-fe09-4a1e-a1d7-520d00531306": "Linux root (S390X)",
  "8484680c-9521-48c6-9c11-b0720656f69e": "Linux /usr (x86-64)",
  "b0e01050-ee5f-4390-949a-9101b17104e9": "Linux /usr (ARM-64)",
  "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
  "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
  "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery environment",
  "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3": "Microsoft LDM metadata",
  "af9b60a0-1431-4f62-bc68-3311714a69ad": "Microsoft LDM data",
  "48465300-0000-11aa-aa11-00306543ecac": "Apple HFS/HFS+",
  "7c3457ef-0000-11aa-aa11-00306543ecac": "Apple APFS",
  "516e7cb4-6ecf-11d6-8ff8-00022d09712b": "FreeBSD data",
  "516e7cb6-6ecf-11d6-8ff8-00022d09712b": "FreeBSD UFS",
  "516e7cba-6ecf-11d6-8ff8-00022d09712b": "FreeBSD ZFS",
  "6a898cc3-1dd2-11b2-99a6-080020736631": "Solaris /usr & Apple ZFS",
};

/** MBR partition type bytes → name. */
export const MBR_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: "FAT12",
  4: "FAT16 <32M",
  5: "Extended",
  6: "FAT16",
  7: "HPFS/NTFS/exFAT",
  11: "W95 FAT32",
  12: "W95 FAT32 (LBA)",
  14: "W95 FAT16 (LBA)",
  15: "W95 Ext'd (LBA)",
  39: "Hidden NTFS WinRE",
  65: "PPC PReP Boot",
  66: "SFS",
  130: "Linux swap / Solaris",
  131: "Linux",
  133: "Linux extended",
  142: "Linux LVM",
  165: "FreeBSD",
  166: "OpenBSD",
  169: "NetBSD",
  175: "HFS / HFS+",
  218: "Non-FS data",
  234: "Linux extended boot",
  238: "GPT",
  239: "EFI (FAT-12/16/32)",
  251: "VMware VMFS",
  253: "Linux raid autodetect",
};

/** MBR types that hold a chain of extended boot records rather than a filesystem. */
export const MBR_EXTENDED_TYPES: ReadonlySet<number> = new Set([0x05, 0x0f, 0x85]);

/** The type of the single entry of a protective MBR in front of a GPT. */
export const MBR_GPT_PROTECTIVE = 0xee;

export function gptTypeName(guid: string): string | undefined {
  return GPT_TYPE_NAMES[guid.toLowerCase()];
}

export function mbrTypeName(id: number): string | undefined {
  return MBR_TYPE_NAMES[id];
}
