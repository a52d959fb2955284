/** The stored SELinux label of a guest path (`ls -Z`, `stat`), read from the path itself. */
import { contextFromXattr, SELINUX_XATTR } from "@imgpatch/selinux";
import type { GuestFs, GuestStats } from "../guest/guest-fs.js";

/** The `security.selinux` value without its NUL, or null when the path has none. */
export async function readSelinuxLabel(fs: GuestFs, path: string, stats: GuestStats): Promise<string | null> {
  try {
    const v = fs.lgetxattr
      ? await fs.lgetxattr(path, SELINUX_XATTR)
      : stats.type === "symlink"
        ? undefined
        : await fs.getxattr(path, SELINUX_XATTR);
    return v === undefined ? null : contextFromXattr(v);
  } catch {
    return null;
  }
}
