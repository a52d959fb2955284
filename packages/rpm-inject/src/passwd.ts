/**
 * The guest's own user and group names (its /etc/passwd and /etc/group, never the host's), shared
 * with the Debian installer: the code lives in @imgpatch/pkgkit. InjectTarget is structurally the
 * same as pkgkit's PkgTarget, so rpm-inject's targets pass as they are.
 */
export { type OwnerDb, parseIdFile, readOwnerDb } from "@imgpatch/pkgkit";
