import { getU64, viewOf } from "./bytes.js";
import { Qcow2FormatError } from "./errors.js";
import { MAX_SNAPSHOTS } from "./header.js";
import type { HostFile } from "./host-file.js";

/**
 * The internal snapshot table: `nb_snapshots` variable-length entries at `snapshots_offset`.
 *
 *   0  u64 l1_table_offset     8  u32 l1_size        12 u16 id_str_size   14 u16 name_size
 *   16 u32 date_sec            20 u32 date_nsec      24 u64 vm_clock_nsec 32 u32 vm_state_size
 *   36 u32 extra_data_size     40 extra data (40 u64 vm_state_size_large, 48 u64 disk_size)
 *   then id string, name string, padding to 8
 */
export interface Qcow2Snapshot {
  id: string;
  name: string;
  l1TableOffset: number;
  l1Size: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  vmStateSize: number;
  /** Virtual disk size recorded with the snapshot (v3 extra data), if present. */
  diskSize?: number;
  extraData: Uint8Array;
  /** Where the entry sits in the file. */
  entryOffset: number;
}

const ENTRY_FIXED = 40;
const MAX_EXTRA = 1024; // qemu's limit for per-snapshot extra data

export async function readSnapshotTable(
  host: HostFile,
  offset: number,
  count: number,
  clusterSize: number,
  version: number,
): Promise<Qcow2Snapshot[]> {
  const file = host.name;
  if (count === 0) return [];
  if (count > MAX_SNAPSHOTS) {
    throw new Qcow2FormatError("nb_snapshots", `${count} exceeds ${MAX_SNAPSHOTS}`, { file, offset: 60 });
  }
  if (offset % clusterSize !== 0 || offset === 0) {
    throw new Qcow2FormatError("snapshots_offset", `${offset} is not a valid cluster offset`, {
      file,
      offset: 64,
    });
  }
  const out: Qcow2Snapshot[] = [];
  const dec = new TextDecoder();
  let pos = offset;
  const fixed = new Uint8Array(ENTRY_FIXED);
  for (let i = 0; i < count; i++) {
    const field = `snapshot[${i}]`;
    if ((await host.read(pos, fixed)) < ENTRY_FIXED) {
      throw new Qcow2FormatError(field, "snapshot table runs past the end of the file", {
        file,
        offset: pos,
      });
    }
    const v = viewOf(fixed);
    const l1TableOffset = getU64(v, 0);
    const l1Size = v.getUint32(8);
    const idLen = v.getUint16(12);
    const nameLen = v.getUint16(14);
    const extraLen = v.getUint32(36);
    if (extraLen > MAX_EXTRA) {
      throw new Qcow2FormatError(field, `extra data size ${extraLen} exceeds ${MAX_EXTRA}`, {
        file,
        offset: pos + 36,
      });
    }
    if (version >= 3 && extraLen < 16) {
      throw new Qcow2FormatError(field, `extra data size ${extraLen} < 16 in a v3 image`, {
        file,
        offset: pos + 36,
      });
    }
    if (l1TableOffset < 0 || l1TableOffset % clusterSize !== 0) {
      throw new Qcow2FormatError(field, "l1_table_offset is not cluster aligned", { file, offset: pos });
    }
    const restLen = extraLen + idLen + nameLen;
    const rest = new Uint8Array(restLen);
    if ((await host.read(pos + ENTRY_FIXED, rest)) < restLen) {
      throw new Qcow2FormatError(field, "snapshot entry runs past the end of the file", {
        file,
        offset: pos,
      });
    }
    const extra = rest.subarray(0, extraLen);
    const ev = viewOf(extra);
    let vmStateSize = v.getUint32(32);
    let diskSize: number | undefined;
    if (extraLen >= 8) vmStateSize = getU64(ev, 0);
    if (extraLen >= 16) diskSize = getU64(ev, 8);
    out.push({
      id: dec.decode(rest.subarray(extraLen, extraLen + idLen)),
      name: dec.decode(rest.subarray(extraLen + idLen, restLen)),
      l1TableOffset,
      l1Size,
      dateSec: v.getUint32(16),
      dateNsec: v.getUint32(20),
      vmClockNsec: getU64(v, 24),
      vmStateSize,
      diskSize: diskSize !== undefined && diskSize >= 0 ? diskSize : undefined,
      extraData: extra.slice(),
      entryOffset: pos,
    });
    pos += Math.ceil((ENTRY_FIXED + restLen) / 8) * 8;
  }
  return out;
}
