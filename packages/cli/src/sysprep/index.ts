/**
 * `imgpatch sysprep`: virt-sysprep's operations over a GuestFs. `selectOperations` reads
 * --enable/--operations as virt-sysprep does; `runSysprep` performs the filesystem operations in
 * virt-sysprep's order and reports what each changed. fs-uuids runs later, at the device level
 * (see fs-uuids.ts); the caller passes `setFilesystemUuids` to the guest's commit.
 */
import { ImgpatchError } from "@imgpatch/disk";
import { addFirstbootScript } from "../guest/firstboot.js";
import type { GuestFs } from "../guest/guest-fs.js";
import type { OsRelease } from "../image/os-release.js";
import { customizeBase } from "./customize-op.js";
import { SysprepFs } from "./guest-ops.js";
import { DEBIAN_FAMILY, inspectForSysprep, RED_HAT_FAMILY, type SysprepInspection } from "./inspect.js";
import { runOrder, SYSPREP_OPERATIONS, sysprepOperation } from "./operations.js";
import type { SysprepContext } from "./types.js";

export { DryRunGuestFs } from "./dry-run-fs.js";
export { FsUuidError, setExt4Uuid, setFilesystemUuids, setXfsUuid } from "./fs-uuids.js";
export { inspectForSysprep, type SysprepInspection } from "./inspect.js";
export { listOperationsText, SYSPREP_OPERATIONS, type SysprepOperation } from "./operations.js";
export { SysprepGuestError } from "./user-account.js";

/** A bad --enable/--operations/--*-user-accounts argument, or a refused operation named (exit 2). */
export class SysprepUsageError extends ImgpatchError {
  constructor(message: string) {
    super("EUSAGE", message, {});
  }
}

export interface SysprepSelection {
  /** The operations to run. */
  operations: Set<string>;
  /** The ones named explicitly (not through the default set or `all`). */
  named: Set<string>;
}

const DEFAULTS = SYSPREP_OPERATIONS.filter((o) => o.defaultOn).map((o) => o.name);
const ALL = SYSPREP_OPERATIONS.map((o) => o.name);

function known(name: string, option: string): string {
  if (!sysprepOperation(name)) throw new SysprepUsageError(`${option}: '${name}' is not a known operation`);
  return name;
}

/**
 * virt-sysprep's selection: `--enable A,B` (once) is exactly those; `--operations LIST`
 * (repeatable) adds and removes (`-NAME`) names, `defaults` and `all`, starting from --enable's
 * set or from nothing; neither: the default set.
 */
export function selectOperations(
  enable: string | undefined,
  operations: readonly string[],
): SysprepSelection {
  const named = new Set<string>();
  let set: Set<string> | undefined;
  if (enable !== undefined) {
    if (enable === "") throw new SysprepUsageError("you cannot pass an empty argument to --enable");
    set = new Set();
    for (const n of enable.split(",")) {
      set.add(known(n, "--enable"));
      named.add(n);
    }
  }
  for (const list of operations) {
    set ??= new Set();
    for (const item of list.split(",")) {
      const remove = item.startsWith("-");
      const n = remove ? item.slice(1) : item;
      if (n === "") throw new SysprepUsageError("--operations: empty operation name");
      const names = n === "defaults" ? DEFAULTS : n === "all" ? ALL : [known(n, "--operations")];
      for (const x of names) {
        if (remove) {
          set.delete(x);
          named.delete(x);
        } else set.add(x);
      }
      if (!remove && n !== "defaults" && n !== "all") named.add(n);
    }
  }
  return { operations: set ?? new Set(DEFAULTS), named };
}

/** The refused operations (script, lvm-uuids) named explicitly fail before anything is opened. */
export function checkRefused(sel: SysprepSelection): void {
  for (const n of sel.named) {
    const op = sysprepOperation(n);
    if (op?.kind === "refused")
      throw new SysprepUsageError(`sysprep operation ${n} is not supported: ${op.refusal}`);
  }
}

export interface SysprepOptions {
  selection: SysprepSelection;
  /** --remove-user-accounts / --keep-user-accounts. */
  removeUsers?: readonly string[];
  keepUsers?: readonly string[];
  /** Timestamp for files written (SOURCE_DATE_EPOCH). */
  now?: Date;
  /** The customize operations given on the command line (run by `customize`, last). */
  customizeSteps?: () => Promise<string[]>;
  /** Called after each operation with its change lines. */
  onOperation?: (name: string, changes: string[]) => void;
}

export interface SysprepResult {
  inspection: SysprepInspection;
  operations: Array<{ op: string; changes: string[] }>;
  /** Skipped operations, first-boot steps, warnings. */
  notes: string[];
  /** fs-uuids is selected: pass setFilesystemUuids to the commit. */
  fsUuids: boolean;
}

/** Checks --remove/--keep-user-accounts as virt-sysprep does (names non-empty, user-account enabled). */
export function userAccountLists(
  sel: SysprepSelection,
  remove: readonly string[] = [],
  keep: readonly string[] = [],
): { removeUsers: string[]; keepUsers: string[] } {
  const split = (v: readonly string[]) =>
    v.flatMap((s) =>
      s.split(",").map((u) => {
        if (u === "") throw new SysprepUsageError("user-accounts: empty user name");
        return u;
      }),
    );
  const removeUsers = split(remove);
  const keepUsers = split(keep);
  if (!sel.operations.has("user-account")) {
    if (keepUsers.length > 0)
      throw new SysprepUsageError(
        'user-accounts: --keep-user-accounts parameter was used, but the "user-account" operation is not enabled',
      );
    if (removeUsers.length > 0)
      throw new SysprepUsageError(
        'user-accounts: --remove-user-accounts parameter was used, but the "user-account" operation is not enabled',
      );
  }
  return { removeUsers, keepUsers };
}

export async function runSysprep(
  fs: GuestFs,
  os: OsRelease,
  options: SysprepOptions,
): Promise<SysprepResult> {
  const inspection = inspectForSysprep(os);
  const sfs = new SysprepFs(fs, options.now);
  const ctx: SysprepContext = {
    sfs,
    inspection,
    updateCaStore: false,
    removeUsers: new Set(options.removeUsers ?? []),
    keepUsers: new Set(options.keepUsers ?? []),
    notes: [],
  };
  const results: SysprepResult["operations"] = [];
  let fsUuids = false;
  for (const op of runOrder(options.selection.operations)) {
    const before = sfs.changes.length;
    const extra: string[] = [];
    if (op.kind === "refused") {
      ctx.notes.push(`${op.name}: skipped: ${op.refusal}`);
      continue;
    }
    if (op.kind === "fs-uuids") {
      fsUuids = true;
      continue;
    }
    if (op.kind === "customize") {
      await customizeBase(ctx);
      if (options.customizeSteps) extra.push(...(await options.customizeSteps()));
    } else await op.perform?.(ctx);
    const changes = [...sfs.changes.slice(before), ...extra];
    results.push({ op: op.name, changes });
    options.onOperation?.(op.name, changes);
  }
  if (ctx.updateCaStore) {
    const line = await queueCaStoreUpdate(fs, inspection);
    ctx.notes.push(line);
  }
  return { inspection, operations: results, notes: ctx.notes, fsUuids };
}

/**
 * A CA certificate went: virt-sysprep runs the guest's CA store update in its appliance; without
 * a VM it is queued for the first boot.
 */
async function queueCaStoreUpdate(fs: GuestFs, inspection: SysprepInspection): Promise<string> {
  let cmd: string | undefined;
  if (RED_HAT_FAMILY.has(inspection.distro)) cmd = "update-ca-trust extract";
  else if (DEBIAN_FAMILY.has(inspection.distro)) cmd = "update-ca-certificates";
  if (!cmd) return `updating the system CA store on this guest (${inspection.distro}) is not supported`;
  const p = await addFirstbootScript(fs, "update-ca-store", `#!/bin/sh\n${cmd}\n`, { replacePending: true });
  return `CA store update queued for the first boot (no VM at build time): ${p}`;
}
