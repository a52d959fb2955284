/**
 * @imgpatch/deb writes through this: rpm-inject's GuestFs adapter plus the one-operation fast paths
 * of PkgTarget (a file or directory created with its owner, mode and mtime in one call: on an ext4
 * image each call resolves the path again, and a package closure has tens of thousands of files).
 */
import type { NewNodeAttrs, PkgTarget } from "@imgpatch/pkgkit";
import type { GuestFs } from "./guest-fs.js";
import { injectTargetFromGuestFs } from "./rpm-bridge.js";

export function debTargetFromGuestFs(fs: GuestFs, name: string): PkgTarget {
  const date = (s: number) => new Date(s * 1000);
  return {
    ...injectTargetFromGuestFs(fs, name),
    async writeFileAttrs(path: string, content: AsyncIterable<Uint8Array>, a: NewNodeAttrs): Promise<void> {
      await fs.writeFile(path, content, { mode: a.perms, uid: a.uid, gid: a.gid, mtime: date(a.mtime) });
    },
    async mkdirAttrs(path: string, a: NewNodeAttrs): Promise<void> {
      await fs.mkdir(path, { mode: a.perms, uid: a.uid, gid: a.gid });
      await fs.utimes(path, date(a.mtime), date(a.mtime));
    },
  };
}
