/**
 * The guest filesystem an injection writes to, as an interface: the ext4 editor implements it for
 * images; MemoryTarget and HostDirTarget stand in for tests and for dry runs. It is pkgkit's
 * PkgTarget (shared with the .deb installer; rpm-inject does not use its optional fast paths).
 *
 * Every path is an absolute guest path. Symlinks in intermediate components are followed INSIDE the
 * guest (absolute targets start at the guest root, ".." stops at the root); the final component is
 * never followed, except by readFile. Implementations may use `resolveGuestPath` for this.
 */
import { type PkgTarget, type ResolveOps, resolveGuestPath as resolveWith } from "@imgpatch/pkgkit";
import { InjectConflictError } from "./errors.js";

export {
  MAX_SYMLINK_HOPS,
  type NodeType,
  type ResolveOps,
  type TargetFileType,
  type TargetStat,
} from "@imgpatch/pkgkit";

export type InjectTarget = PkgTarget;

/**
 * Resolves symlinks in a guest path inside the guest: returns a path whose intermediate components
 * (and the final one when `followFinal`) are not symlinks. Never leaves the guest root; a symlink
 * loop is an InjectConflictError.
 */
export function resolveGuestPath(
  path: string,
  ops: ResolveOps,
  followFinal: boolean,
  targetName = "<guest>",
): Promise<string> {
  return resolveWith(path, ops, followFinal, targetName, InjectConflictError);
}
