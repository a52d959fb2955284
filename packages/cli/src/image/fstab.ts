/**
 * /etc/fstab of the guest, and how a device spec (UUID=, LABEL=, PARTUUID=, PARTLABEL=, /dev/…,
 * /dev/disk/by-*) or a `-m DEV:MOUNTPOINT` device names one of the disk's volumes.
 */
import type { VolumeInspection } from "@imgpatch/disk";
import { normalizeGuestPath } from "../guest/paths.js";

export interface FstabEntry {
  spec: string;
  mountpoint: string;
  fstype: string;
  options: string[];
  line: number;
}

/** Filesystem types that never live on the disk (nothing to route). */
const VIRTUAL = new Set([
  "swap",
  "none",
  "tmpfs",
  "proc",
  "sysfs",
  "devpts",
  "devtmpfs",
  "cgroup",
  "cgroup2",
  "nfs",
  "nfs4",
  "cifs",
  "bind",
  "securityfs",
  "hugetlbfs",
  "mqueue",
  "debugfs",
  "efivarfs",
  "fuse",
]);

/** fstab escapes spaces and friends as octal (\040). */
function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Entries that mount a disk filesystem on an absolute path (swap, virtual fs and bind mounts left out). */
export function parseFstab(text: string): FstabEntry[] {
  const out: FstabEntry[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    if (raw === "" || raw.startsWith("#")) continue;
    const f = raw.split(/\s+/);
    if (f.length < 2) continue;
    const [spec, mp, fstype = "auto", opts = "defaults"] = f.map(unescapeOctal);
    const options = opts.split(",");
    if (!mp.startsWith("/") || VIRTUAL.has(fstype) || options.includes("bind")) continue;
    // Normalised like every guest path (a hostile "/boot/../etc" must not dodge the routing).
    out.push({ spec, mountpoint: normalizeGuestPath(mp), fstype, options, line: i + 1 });
  }
  return out;
}

function eqi(a: string | undefined, b: string): boolean {
  return a !== undefined && a.toLowerCase() === b.toLowerCase();
}

const PART_DEV = /^\/dev\/(?:[shv]d[a-z]|xvd[a-z])(\d+)$|^\/dev\/(?:nvme\d+n\d+|mmcblk\d+|loop\d+)p(\d+)$/;

/**
 * The volume a spec names, or undefined. Whole-disk device names (/dev/sda) match the
 * table-less volume; numbered ones (/dev/vda3, /dev/nvme0n1p3) the partition of that number;
 * a bare number too (as `-m 3:/`).
 */
export function findVolume(spec: string, volumes: readonly VolumeInspection[]): VolumeInspection | undefined {
  const kv = /^(UUID|LABEL|PARTUUID|PARTLABEL)=(.*)$/.exec(spec);
  const by = /^\/dev\/disk\/by-(uuid|label|partuuid|partlabel)\/(.+)$/.exec(spec);
  const key = kv ? kv[1] : by ? by[1].toUpperCase() : undefined;
  const value = kv ? kv[2].replace(/^"(.*)"$/, "$1") : by ? by[2] : undefined;
  if (key !== undefined && value !== undefined) {
    return volumes.find((v) => {
      switch (key) {
        case "UUID":
          return eqi(v.filesystem?.uuid, value);
        case "LABEL":
          return v.filesystem?.label === value;
        case "PARTUUID":
          return eqi(v.partition?.uuid, value);
        default:
          return v.partition?.name === value;
      }
    });
  }
  if (/^\d+$/.test(spec)) return volumes.find((v) => v.partition?.number === Number(spec));
  const m = PART_DEV.exec(spec);
  if (m) return volumes.find((v) => v.partition?.number === Number(m[1] ?? m[2]));
  if (/^\/dev\/(?:[shv]d[a-z]|xvd[a-z]|nvme\d+n\d+|mmcblk\d+)$/.test(spec)) {
    return volumes.length === 1 && !volumes[0].partition ? volumes[0] : undefined;
  }
  return undefined;
}

/** Human name of a volume for messages: "partition 2 (vfat \"EFI\")" or "the disk (ext4)". */
export function volumeName(v: VolumeInspection): string {
  const fs = v.filesystem
    ? `${v.filesystem.type}${v.filesystem.label ? ` "${v.filesystem.label}"` : ""}`
    : "unrecognised";
  return `${v.partition ? `partition ${v.partition.number}` : "the disk"} (${fs})`;
}
