/** The state one sysprep run hands each operation. */
import type { SysprepFs } from "./guest-ops.js";
import type { SysprepInspection } from "./inspect.js";

export interface SysprepContext {
  sfs: SysprepFs;
  inspection: SysprepInspection;
  /** An operation removed a CA certificate: the guest's CA store needs updating (side effect). */
  updateCaStore: boolean;
  /** user-account: --remove-user-accounts / --keep-user-accounts (user names). */
  removeUsers: ReadonlySet<string>;
  keepUsers: ReadonlySet<string>;
  /** Lines worth printing without --verbose (skipped operations, first-boot steps). */
  notes: string[];
}
