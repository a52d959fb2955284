/**
 * @imgpatch/deb writes through this: rpm-inject's GuestFs adapter plus the one-operation fast paths
 * of PkgTarget (a file or directory created with its owner, mode and mtime in one call: on an ext4
 * image each call resolves the path again, and a package closure has tens of thousands of files).
 */
import { FormatError } from "@imgpatch/disk";
import type { NewNodeAttrs, PkgTarget } from "@imgpatch/pkgkit";
import type { GuestFs } from "./guest-fs.js";
import { injectTargetFromGuestFs } from "./rpm-bridge.js";

const SMALL_FILE = 1 << 20;

async function collect(content: AsyncIterable<Uint8Array>, size: number, name: string): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  let at = 0;
  for await (const c of content) {
    if (at + c.length > size) throw new FormatError(`content longer than its ${size} bytes`, { file: name });
    out.set(c, at);
    at += c.length;
  }
  return at === size ? out : out.subarray(0, at);
}

export function debTargetFromGuestFs(fs: GuestFs, name: string): PkgTarget {
  const date = (s: number) => new Date(s * 1000);
  return {
    // No cached directory names: writeFileAttrs/mkdirAttrs below would not keep them current.
    ...injectTargetFromGuestFs(fs, name, undefined, false),
    async writeFileAttrs(path: string, content: AsyncIterable<Uint8Array>, a: NewNodeAttrs): Promise<void> {
      // Small files in one buffer: the ext4 editor writes those without its streaming machinery
      // (most of a package closure's files are a few KiB); large ones stream.
      const data =
        a.size !== undefined && a.size <= SMALL_FILE ? await collect(content, a.size, path) : content;
      await fs.writeFile(path, data, { mode: a.perms, uid: a.uid, gid: a.gid, mtime: date(a.mtime) });
    },
    async mkdirAttrs(path: string, a: NewNodeAttrs): Promise<void> {
      await fs.mkdir(path, { mode: a.perms, uid: a.uid, gid: a.gid });
      await fs.utimes(path, date(a.mtime), date(a.mtime));
    },
  };
}
