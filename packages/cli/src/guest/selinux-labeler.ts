/**
 * SELinux labels for everything imgpatch writes. `SelinuxLabelingGuestFs` wraps a GuestFs: when the
 * guest's policy is active (`/etc/selinux/config` enforcing or permissive, with a file_contexts),
 * every path created, replaced, renamed or linked through it — and the whole subtree of a moved
 * directory — gets the `security.selinux` label the guest's own policy assigns (as rpm, restorecon
 * and setfiles would), so every caller (customize operations, RPM payloads, elements, first-boot
 * files, ssh-inject) is covered without knowing about it. Without an active policy it only passes
 * calls through. `relabelAll()` is the offline `setfiles -F` over every mounted filesystem.
 *
 * Labels are computed from the path the file really has: symlinks in the parent chain are
 * resolved inside the guest first (a file written to /var/run/x.pid lives at /run/x.pid).
 */
import {
  type FileContexts,
  type GuestPolicy,
  labelPath,
  loadGuestPolicy,
  modeOfType,
  type RelabelReport,
  relabelTree,
  SELINUX_XATTR,
  type TreeFileType,
} from "@imgpatch/selinux";
import {
  type GuestData,
  type GuestFs,
  GuestFsError,
  type GuestMkdirOptions,
  type GuestNodeType,
  type GuestOwnerOptions,
  type GuestStats,
  type GuestWriteOptions,
  isGuestError,
} from "./guest-fs.js";
import { normalizeGuestPath } from "./paths.js";

const MAX_SYMLINKS = 40;

function parentOf(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}
function baseOf(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}
function joinPath(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

export interface SelinuxLabelStats {
  /** Labels written by the wrapper (not counting relabelAll). */
  labelled: number;
}

export class SelinuxLabelingGuestFs implements GuestFs {
  readonly inner: GuestFs;
  readonly policy?: GuestPolicy;
  readonly stats: SelinuxLabelStats = { labelled: 0 };
  private readonly contexts?: FileContexts;
  /** Real (symlink-free) paths of directories already resolved; cleared by any namespace change. */
  private readonly realDirs = new Map<string, string>();

  constructor(inner: GuestFs, policy?: GuestPolicy) {
    this.inner = inner;
    this.policy = policy;
    this.contexts = policy?.contexts;
  }

  /** Wraps `fs` with the guest's own policy (loaded now); no policy: calls pass through. */
  static async open(fs: GuestFs): Promise<SelinuxLabelingGuestFs> {
    return new SelinuxLabelingGuestFs(fs, await loadGuestPolicy(fs));
  }

  /** True when labels are being written. */
  get active(): boolean {
    return this.contexts !== undefined;
  }

  /** The label the policy gives a path of this type (null: none). */
  expectedLabel(path: string, type: TreeFileType): string | null {
    return this.contexts?.lookup(normalizeGuestPath(path), modeOfType(type)) ?? null;
  }

  /** The real path of a directory: every symlink resolved inside the guest. */
  private async realDir(dir: string, depth = 0): Promise<string> {
    if (dir === "/") return "/";
    const cached = this.realDirs.get(dir);
    if (cached !== undefined) return cached;
    const parent = await this.realDir(parentOf(dir), depth);
    let here = joinPath(parent, baseOf(dir));
    const name = baseOf(dir);
    if (name === "..") here = parentOf(parent);
    else if (name === "." || name === "") here = parent;
    else {
      const st = await this.inner.lstat(here);
      if (st.type === "symlink") {
        if (depth >= MAX_SYMLINKS) throw new GuestFsError("ELOOP", dir, "too many levels of symbolic links");
        const target = await this.inner.readlink(here);
        const abs = target.startsWith("/") ? target : `${parent === "/" ? "" : parent}/${target}`;
        here = await this.realDir(normalizeGuestPath(abs), depth + 1);
      }
    }
    this.realDirs.set(dir, here);
    return here;
  }

  /** The real path of `path` itself (its parents resolved; the last component kept unless `follow`). */
  private async realPath(path: string, follow: boolean): Promise<string> {
    const p = normalizeGuestPath(path);
    if (p === "/") return "/";
    let real = joinPath(await this.realDir(parentOf(p)), baseOf(p));
    if (follow) {
      for (let hops = 0; ; hops++) {
        let st: GuestStats;
        try {
          st = await this.inner.lstat(real);
        } catch (err) {
          if (isGuestError(err, "ENOENT")) return real;
          throw err;
        }
        if (st.type !== "symlink") return real;
        if (hops >= MAX_SYMLINKS) throw new GuestFsError("ELOOP", path, "too many levels of symbolic links");
        const target = await this.inner.readlink(real);
        const abs = target.startsWith("/") ? target : joinPath(parentOf(real), target);
        const n = normalizeGuestPath(abs);
        real = n === "/" ? "/" : joinPath(await this.realDir(parentOf(n)), baseOf(n));
      }
    }
    return real;
  }

  /** Labels one path the wrapper just wrote (type known or looked up). */
  private async label(path: string, type?: TreeFileType, follow = false): Promise<void> {
    if (!this.contexts) return;
    const real = await this.realPath(path, follow);
    const t = type ?? (await this.inner.lstat(real)).type;
    if (t === "symlink" && !this.inner.lsetxattr) return;
    const r = await labelPath(this.labelTarget(), this.contexts, real, t);
    if (r === "changed") this.stats.labelled++;
  }

  private labelTarget() {
    const fs = this.inner;
    return {
      lgetxattr: (p: string, n: string) => (fs.lgetxattr ? fs.lgetxattr(p, n) : fs.getxattr(p, n)),
      lsetxattr: (p: string, n: string, v: Uint8Array) =>
        fs.lsetxattr ? fs.lsetxattr(p, n, v) : fs.setxattr(p, n, v),
    };
  }

  /** Relabels a subtree (a moved directory) or, from "/", every mounted filesystem we can edit. */
  async relabel(root = "/"): Promise<RelabelReport | undefined> {
    if (!this.contexts) return undefined;
    const fs = this.inner;
    return relabelTree(
      {
        readdir: (p) => fs.readdir(p),
        lstat: (p) => fs.lstat(p),
        ...this.labelTarget(),
      },
      this.contexts,
      {
        root: await this.realPath(root, false),
        // mounts imgpatch cannot edit (vfat ESP, read-only volumes) are left as they are
        onError: (_p, err) => isGuestError(err, "EPERM"),
      },
    );
  }

  /** Offline `setfiles -F /`: undefined when the guest has no active policy. */
  relabelAll(): Promise<RelabelReport | undefined> {
    return this.relabel("/");
  }

  // ---------------------------------------------------------------- reads pass through
  lstat(path: string): Promise<GuestStats> {
    return this.inner.lstat(path);
  }
  stat(path: string): Promise<GuestStats> {
    return this.inner.stat(path);
  }
  readdir(path: string): Promise<string[]> {
    return this.inner.readdir(path);
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.inner.readFile(path);
  }
  readlink(path: string): Promise<string> {
    return this.inner.readlink(path);
  }
  getxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    return this.inner.getxattr(path, name);
  }
  listxattr(path: string): Promise<string[]> {
    return this.inner.listxattr(path);
  }
  lgetxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    return this.inner.lgetxattr ? this.inner.lgetxattr(path, name) : this.inner.getxattr(path, name);
  }

  // ---------------------------------------------------------------- writes, then labels
  async mkdir(path: string, options?: GuestMkdirOptions): Promise<string | undefined> {
    const first = await this.inner.mkdir(path, options);
    if (!this.contexts) return first;
    if (!options?.recursive) {
      await this.label(path, "directory");
      return first;
    }
    if (first === undefined) return first;
    // every directory from the first created one down to `path`
    const target = normalizeGuestPath(path);
    const f = normalizeGuestPath(first);
    await this.label(f, "directory");
    const rest = target.slice(f.length).split("/").filter(Boolean);
    let cur = f;
    for (const name of rest) {
      cur = joinPath(cur, name);
      await this.label(cur, "directory");
    }
    return first;
  }
  async writeFile(path: string, data: GuestData, options?: GuestWriteOptions): Promise<void> {
    await this.inner.writeFile(path, data, options);
    await this.label(path, "file", true);
  }
  async symlink(target: string, path: string, options?: GuestOwnerOptions): Promise<void> {
    await this.inner.symlink(target, path, options);
    this.realDirs.clear();
    await this.label(path, "symlink");
  }
  async link(existingPath: string, newPath: string): Promise<void> {
    await this.inner.link(existingPath, newPath);
    await this.label(newPath);
  }
  async unlink(path: string): Promise<void> {
    await this.inner.unlink(path);
    this.realDirs.clear();
  }
  async rmdir(path: string): Promise<void> {
    await this.inner.rmdir(path);
    this.realDirs.clear();
  }
  async rename(oldPath: string, newPath: string): Promise<void> {
    await this.inner.rename(oldPath, newPath);
    this.realDirs.clear();
    if (!this.contexts) return;
    const st = await this.inner.lstat(newPath);
    if (st.type === "directory") await this.relabel(newPath);
    else await this.label(newPath, st.type);
  }
  chmod(path: string, mode: number): Promise<void> {
    return this.inner.chmod(path, mode);
  }
  chown(path: string, uid: number, gid: number): Promise<void> {
    return this.inner.chown(path, uid, gid);
  }
  lchown(path: string, uid: number, gid: number): Promise<void> {
    return this.inner.lchown(path, uid, gid);
  }
  utimes(path: string, atime: Date, mtime: Date): Promise<void> {
    return this.inner.utimes(path, atime, mtime);
  }
  lutimes(path: string, atime: Date, mtime: Date): Promise<void> {
    return this.inner.lutimes(path, atime, mtime);
  }
  async mknod(
    path: string,
    type: GuestNodeType,
    mode: number,
    major?: number,
    minor?: number,
    owner?: GuestOwnerOptions,
  ): Promise<void> {
    await this.inner.mknod(path, type, mode, major, minor, owner);
    await this.label(path, type);
  }
  setxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    return this.inner.setxattr(path, name, value);
  }
  lsetxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    return this.inner.lsetxattr
      ? this.inner.lsetxattr(path, name, value)
      : this.inner.setxattr(path, name, value);
  }
}

/** The wrapper inside a GuestFs, when there is one. */
export function selinuxLabeler(fs: GuestFs): SelinuxLabelingGuestFs | undefined {
  return fs instanceof SelinuxLabelingGuestFs ? fs : undefined;
}

export { SELINUX_XATTR };
