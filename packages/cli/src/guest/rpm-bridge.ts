/**
 * Glue between rpm-inject and the guest: an InjectTarget over any GuestFs, and the queueing of
 * rpm-inject's deferred scriptlets (FirstbootPlan) into the shared first-boot queue.
 */

import type { NewNodeAttrs } from "@imgpatch/pkgkit";
import type { FirstbootPlan, FirstbootStep, InjectTarget, NodeType, TargetStat } from "@imgpatch/rpm-inject";
import { collectGuestData } from "./data.js";
import { addFirstbootScript } from "./firstboot.js";
import { ensureDir, lstatOrNull } from "./fs-util.js";
import type { GuestFs } from "./guest-fs.js";

const secs = (d: Date) => Math.floor(d.getTime() / 1000);
const date = (s: number) => new Date(s * 1000);

/**
 * The names in directories the injection touches, so that asking about a path that does not exist
 * yet (every new file of a payload, several times each) costs a set lookup instead of a failed
 * lstat: the guest filesystem reports absence by throwing, and building those errors was the
 * largest single cost of installing many small packages. A directory's names are read once and kept
 * up to date by the target's own changes (nothing else writes while rpm-inject runs). Only
 * directories reached without symlinks are cached, so one directory never has two entries.
 */
class DirNames {
  private readonly dirs = new Map<string, Set<string> | null>();
  constructor(private readonly fs: GuestFs) {}

  private static split(path: string): [string, string] {
    const k = path.lastIndexOf("/");
    return [k <= 0 ? "/" : path.slice(0, k), path.slice(k + 1)];
  }

  /** The names of `dir`, or null when it is not cached (absent, behind a symlink, unreadable). */
  private async names(dir: string): Promise<Set<string> | null> {
    const known = this.dirs.get(dir);
    if (known !== undefined) return known;
    let names: Set<string> | null = null;
    if (dir === "/" || (await this.realDir(dir))) {
      try {
        names = new Set(await this.fs.readdir(dir));
      } catch {
        names = null;
      }
    }
    this.dirs.set(dir, names);
    return names;
  }

  /** Is every component of `dir` a directory (no symlinks)? */
  private async realDir(dir: string): Promise<boolean> {
    const [parent, name] = DirNames.split(dir);
    const names = await this.names(parent);
    if (names === null || !names.has(name)) return false;
    return (await lstatOrNull(this.fs, dir))?.type === "directory";
  }

  /** False only when `path` surely does not exist. */
  async mayExist(path: string): Promise<boolean> {
    const [dir, name] = DirNames.split(path);
    const names = await this.names(dir);
    return names === null || names.has(name);
  }

  /** The cached names of `path`'s parent; a change through an uncached parent (a symlink, say) forgets all. */
  private parentOf(path: string): [Set<string> | undefined, string] {
    const [dir, name] = DirNames.split(path);
    const names = this.dirs.get(dir);
    if (!names) this.dirs.clear();
    return [names ?? undefined, name];
  }

  added(path: string, isDir = false): void {
    const [names, name] = this.parentOf(path);
    names?.add(name);
    if (isDir && names) this.dirs.set(path, new Set());
  }

  removed(path: string): void {
    const [names, name] = this.parentOf(path);
    names?.delete(name);
    // Whatever was cached below it is gone or moved.
    for (const d of this.dirs.keys()) if (d === path || d.startsWith(`${path}/`)) this.dirs.delete(d);
  }
}

/**
 * rpm-inject writes through this: final components are never followed, as rpm does. `onWritten`
 * receives the size of each regular file written (progress of a payload). `cacheNames` (default
 * on) keeps DirNames; a caller adding ways to write that bypass these methods must turn it off.
 */
export function injectTargetFromGuestFs(
  fs: GuestFs,
  name: string,
  onWritten?: (bytes: number) => void,
  cacheNames = true,
): InjectTarget {
  const dirNames = cacheNames ? new DirNames(fs) : null;
  const lstat = async (path: string) =>
    dirNames === null || (await dirNames.mayExist(path)) ? lstatOrNull(fs, path) : null;
  return {
    name,
    async lstat(path: string): Promise<TargetStat | undefined> {
      const st = await lstat(path);
      if (!st) return undefined;
      return {
        type: st.type === "directory" ? "dir" : st.type,
        perms: st.mode,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        mtime: secs(st.mtime),
        nlink: st.nlink,
        ino: st.ino,
        rdevMajor: st.rdevMajor,
        rdevMinor: st.rdevMinor,
      };
    },
    async exists(path: string): Promise<boolean> {
      return (await lstat(path)) !== null;
    },
    readlink: (path) => fs.readlink(path),
    async *readFile(path: string): AsyncIterable<Uint8Array> {
      yield await fs.readFile(path);
    },
    async mkdir(path: string, perms: number): Promise<void> {
      await fs.mkdir(path, { mode: perms, uid: 0, gid: 0 });
      dirNames?.added(path, true);
    },
    async writeFile(path: string, content: AsyncIterable<Uint8Array>, perms: number): Promise<void> {
      const st = await lstat(path);
      if (st && st.type !== "file" && st.type !== "directory") await fs.unlink(path);
      const data = await collectGuestData(content);
      await fs.writeFile(path, data, { mode: perms });
      dirNames?.added(path);
      onWritten?.(data.length);
    },
    async writeFileAttrs(path: string, content: AsyncIterable<Uint8Array>, a: NewNodeAttrs): Promise<void> {
      // rpm-inject calls this for files its plan creates (nothing at the path).
      const data = await collectGuestData(content);
      await fs.writeFile(path, data, { mode: a.perms, uid: a.uid, gid: a.gid, mtime: date(a.mtime) });
      dirNames?.added(path);
      onWritten?.(data.length);
    },
    async symlink(target: string, path: string): Promise<void> {
      await fs.symlink(target, path);
      dirNames?.added(path);
    },
    async link(existing: string, path: string): Promise<void> {
      await fs.link(existing, path);
      dirNames?.added(path);
    },
    async mknod(path: string, type: NodeType, perms: number, major: number, minor: number): Promise<void> {
      await fs.mknod(path, type, perms, major, minor);
      dirNames?.added(path);
    },
    chown: (path, uid, gid) => fs.lchown(path, uid, gid),
    async chmod(path: string, perms: number): Promise<void> {
      if ((await lstat(path))?.type === "symlink") return; // link modes mean nothing
      await fs.chmod(path, perms);
    },
    utimes: (path, atime, mtime) => fs.lutimes(path, date(atime), date(mtime)),
    setxattr: (path, n, value) => fs.setxattr(path, n, value),
    async rename(from: string, to: string): Promise<void> {
      await fs.rename(from, to);
      dirNames?.removed(from);
      dirNames?.removed(to);
      dirNames?.added(to);
    },
    async unlink(path: string): Promise<void> {
      await fs.unlink(path);
      dirNames?.removed(path);
    },
    async rmdir(path: string): Promise<void> {
      await fs.rmdir(path);
      dirNames?.removed(path);
    },
    // Lets rpm-inject read the guest's keyring (/etc/pki/rpm-gpg, /etc/yum.repos.d) for signatures.
    readdir: (path) => fs.readdir(path),
  };
}

export const FIRSTBOOT_STEPS_DIR = "/usr/lib/imgpatch/firstboot/steps";

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The queue script of one step: runs its interpreter on the stored body, with rpm's arguments. */
export function firstbootStepScript(step: FirstbootStep, bodyPath: string): string {
  const what = `${step.phase}${step.package ? ` of ${step.package}` : ""}`;
  const body = `"\${IMGPATCH_FIRSTBOOT_ROOT:-}"${q(bodyPath)}`;
  if (step.lua) {
    // rpm ≥ 4.17 ships rpmlua, the interpreter rpm embeds for Lua scriptlets.
    return `#!/bin/sh
# imgpatch: ${what} (Lua scriptlet)
if ! command -v rpmlua >/dev/null 2>&1; then
  echo "imgpatch: cannot run Lua scriptlet ${step.name}: rpmlua is not installed" >&2
  exit 1
fi
exec rpmlua ${body} ${step.args.map(q).join(" ")}
`;
  }
  const argv = step.interpreter.length > 0 ? step.interpreter : ["/bin/sh"];
  return `#!/bin/sh
# imgpatch: ${what}
exec ${argv.map(q).join(" ")} ${body} ${step.args.map(q).join(" ")}
`;
}

/** Queues every step of a plan, in order, behind whatever is already queued. Returns queue paths. */
export async function queueFirstbootPlan(fs: GuestFs, plan: FirstbootPlan): Promise<string[]> {
  const out: string[] = [];
  if (plan.steps.length === 0) return out;
  await ensureDir(fs, FIRSTBOOT_STEPS_DIR, 0o700);
  for (const step of plan.steps) {
    const safe = step.name.replace(/[^A-Za-z0-9._-]+/g, "-");
    const bodyPath = `${FIRSTBOOT_STEPS_DIR}/${safe}`;
    await fs.writeFile(bodyPath, step.body, { mode: 0o700, uid: 0, gid: 0 });
    out.push(await addFirstbootScript(fs, safe, firstbootStepScript(step, bodyPath)));
  }
  return out;
}
