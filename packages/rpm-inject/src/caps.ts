/**
 * File capabilities: rpm stores the text form produced by libcap's cap_to_text() (e.g.
 * "cap_net_bind_service,cap_net_raw=ep"); the kernel wants the binary `security.capability` xattr.
 *
 * VFS_CAP_REVISION_2 xattr layout (20 bytes, little-endian u32s):
 *   0  magic_etc     0x02000000 | 0x1 when the effective bit is set
 *   4  permitted     capabilities 0..31
 *   8  inheritable   capabilities 0..31
 *  12  permitted     capabilities 32..63
 *  16  inheritable   capabilities 32..63
 */
import { RpmFormatError } from "./errors.js";

export const VFS_CAP_REVISION_2 = 0x02000000;
export const VFS_CAP_FLAGS_EFFECTIVE = 0x000001;
export const CAPABILITY_XATTR = "security.capability";

/** Capability numbers (linux/capability.h). */
export const CAPABILITY_NAMES = [
  "chown",
  "dac_override",
  "dac_read_search",
  "fowner",
  "fsetid",
  "kill",
  "setgid",
  "setuid",
  "setpcap",
  "linux_immutable",
  "net_bind_service",
  "net_broadcast",
  "net_admin",
  "net_raw",
  "ipc_lock",
  "ipc_owner",
  "sys_module",
  "sys_rawio",
  "sys_chroot",
  "sys_ptrace",
  "sys_pacct",
  "sys_admin",
  "sys_boot",
  "sys_nice",
  "sys_resource",
  "sys_time",
  "sys_tty_config",
  "mknod",
  "lease",
  "audit_write",
  "audit_control",
  "setfcap",
  "mac_override",
  "mac_admin",
  "syslog",
  "wake_alarm",
  "block_suspend",
  "audit_read",
  "perfmon",
  "bpf",
  "checkpoint_restore",
] as const;

export interface CapabilitySets {
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
}

const ALL = (1n << BigInt(CAPABILITY_NAMES.length)) - 1n;

function capBit(name: string, text: string): bigint {
  const lower = name.toLowerCase();
  const short = lower.startsWith("cap_") ? lower.slice(4) : lower;
  const idx = CAPABILITY_NAMES.indexOf(short as (typeof CAPABILITY_NAMES)[number]);
  if (idx >= 0) return 1n << BigInt(idx);
  if (/^\d+$/.test(short) && Number(short) < 64) return 1n << BigInt(short); // libcap prints unknown caps by number
  throw new RpmFormatError(`unknown capability "${name}" in "${text}"`);
}

/**
 * Parses libcap's text form: whitespace-separated clauses `caps(op flags)+`, op one of = + -,
 * flags from e i p; an empty cap list or "all" means every capability.
 */
export function parseCapabilityText(text: string): CapabilitySets {
  const sets: CapabilitySets = { effective: 0n, permitted: 0n, inheritable: 0n };
  for (const clause of text.trim().split(/\s+/).filter(Boolean)) {
    const m = /^([^=+-]*)((?:[=+-][eipEIP]*)+)$/.exec(clause);
    if (!m) throw new RpmFormatError(`bad capability clause "${clause}" in "${text}"`);
    let mask = 0n;
    if (m[1] === "" || m[1].toLowerCase() === "all") mask = ALL;
    else for (const name of m[1].split(",")) mask |= capBit(name, text);
    for (const op of m[2].match(/[=+-][eipEIP]*/g) ?? []) {
      const flags = op.slice(1).toLowerCase();
      const keys: (keyof CapabilitySets)[] = [];
      if (flags.includes("e")) keys.push("effective");
      if (flags.includes("i")) keys.push("inheritable");
      if (flags.includes("p")) keys.push("permitted");
      if (op[0] === "=") {
        for (const k of ["effective", "permitted", "inheritable"] as const) sets[k] &= ~mask;
      }
      for (const k of keys) sets[k] = op[0] === "-" ? sets[k] & ~mask : sets[k] | mask;
    }
  }
  return sets;
}

/** The `security.capability` xattr value (revision 2) for a capability text, or undefined when empty. */
export function encodeCapabilityXattr(text: string): Uint8Array | undefined {
  const sets = parseCapabilityText(text);
  if (sets.permitted === 0n && sets.inheritable === 0n) return undefined;
  if ((sets.effective & ~(sets.permitted | sets.inheritable)) !== 0n) {
    throw new RpmFormatError(
      `capability "${text}": effective bits must be a subset of permitted|inheritable`,
    );
  }
  const out = new Uint8Array(20);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, VFS_CAP_REVISION_2 | (sets.effective !== 0n ? VFS_CAP_FLAGS_EFFECTIVE : 0), true);
  dv.setUint32(4, Number(sets.permitted & 0xffffffffn), true);
  dv.setUint32(8, Number(sets.inheritable & 0xffffffffn), true);
  dv.setUint32(12, Number((sets.permitted >> 32n) & 0xffffffffn), true);
  dv.setUint32(16, Number((sets.inheritable >> 32n) & 0xffffffffn), true);
  return out;
}
