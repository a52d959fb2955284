/**
 * A GuestFs over several mounted filesystems, routed by mount point like the kernel's VFS. Paths
 * are resolved component by component here (symlinks included, absolute targets from the guest
 * root), so a link on / pointing into /boot lands on the /boot filesystem. A mount imgpatch cannot
 * edit (vfat ESP, xfs…) is kept as a placeholder: touching it is an error naming it.
 */
import {
  type GuestData,
  type GuestDirEntry,
  type GuestFileType,
  type GuestFs,
  GuestFsError,
  type GuestMkdirOptions,
  type GuestNodeType,
  type GuestOwnerOptions,
  type GuestStats,
  type GuestWriteOptions,
} from "../guest/guest-fs.js";
import { normalizeGuestPath } from "../guest/paths.js";

export interface GuestMount {
  /** Absolute guest path, "/" for the root. */
  mountpoint: string;
  /** The filesystem, or undefined for a mount we cannot open. */
  fs?: GuestFs;
  /** Why `fs` is absent ("partition 2 (vfat "EFI") — not supported …"). */
  unsupported?: string;
  /** What it is, for reports ("partition 3 (ext4)"). */
  source: string;
}

const MAX_SYMLINKS = 40;

function split(p: string): string[] {
  return p.split("/").filter((c) => c !== "" && c !== ".");
}

export class MountedGuestFs implements GuestFs {
  readonly mounts: readonly GuestMount[];
  /** Longest mount point first. */
  private readonly byDepth: GuestMount[];

  constructor(mounts: readonly GuestMount[]) {
    if (!mounts.some((m) => m.mountpoint === "/")) throw new Error("MountedGuestFs needs a root mount");
    this.mounts = mounts;
    this.byDepth = [...mounts].sort((a, b) => b.mountpoint.length - a.mountpoint.length);
  }

  /** The mount holding an already-resolved absolute path, and the path inside it. */
  route(path: string): { mount: GuestMount; rel: string } {
    for (const m of this.byDepth) {
      if (m.mountpoint === "/") return { mount: m, rel: path };
      if (path === m.mountpoint) return { mount: m, rel: "/" };
      if (path.startsWith(`${m.mountpoint}/`)) return { mount: m, rel: path.slice(m.mountpoint.length) };
    }
    throw new Error("unreachable: no root mount");
  }

  private isMountAncestor(path: string): boolean {
    return this.mounts.some((m) => m.mountpoint === path || m.mountpoint.startsWith(`${path}/`));
  }

  private fsOf(path: string, mount: GuestMount): GuestFs {
    if (mount.fs) return mount.fs;
    throw new GuestFsError(
      "EPERM",
      path,
      `${path} is on ${mount.mountpoint}, ${mount.unsupported ?? `${mount.source}, which imgpatch cannot edit`}`,
    );
  }

  private async lstatResolved(path: string): Promise<GuestStats> {
    const { mount, rel } = this.route(path);
    return this.fsOf(path, mount).lstat(rel);
  }

  /**
   * Resolves every symlink of `path` (the last one too when `followLast`), across mounts. A missing
   * last component is allowed (the path may be about to be created); a missing parent is ENOENT.
   */
  async resolve(path: string, followLast: boolean): Promise<string> {
    if (!path.startsWith("/")) throw new GuestFsError("EINVAL", path, "guest paths must be absolute");
    if (this.mounts.length === 1) return normalizeGuestPath(path);
    let todo = split(path);
    let done: string[] = [];
    let hops = 0;
    while (todo.length > 0) {
      const name = todo.shift() as string;
      if (name === "..") {
        done.pop();
        continue;
      }
      const isLast = todo.length === 0;
      const candidate = `/${[...done, name].join("/")}`;
      if (isLast && !followLast) {
        done.push(name);
        break;
      }
      // Below a mount we cannot read there is nothing to resolve: the operation reports it.
      if (!this.route(candidate).mount.fs) {
        done.push(name, ...todo);
        break;
      }
      let st: GuestStats;
      try {
        st = await this.lstatResolved(candidate);
      } catch (err) {
        if (isLast && err instanceof GuestFsError && err.code === "ENOENT") {
          done.push(name);
          break;
        }
        // A mount point (or its ancestor) missing from the filesystem below: as the kernel needs
        // the directory to mount, treat it as one (the mount itself answers for its contents).
        if (err instanceof GuestFsError && err.code === "ENOENT" && this.isMountAncestor(candidate)) {
          done.push(name);
          continue;
        }
        if (err instanceof GuestFsError)
          throw new GuestFsError(err.code, path, err.message.replace(/^.*?\b[A-Z]{2,}: /, ""), {
            cause: err,
          });
        throw err;
      }
      if (st.type === "symlink") {
        if (++hops > MAX_SYMLINKS) throw new GuestFsError("ELOOP", path, "too many levels of symbolic links");
        const { mount, rel } = this.route(candidate);
        const target = await this.fsOf(candidate, mount).readlink(rel);
        if (target.startsWith("/")) done = [];
        todo = [...split(target), ...todo];
        continue;
      }
      if (!isLast && st.type !== "directory")
        throw new GuestFsError("ENOTDIR", path, `${candidate} is not a directory`);
      done.push(name);
    }
    return `/${done.join("/")}`;
  }

  private async on<T>(
    path: string,
    follow: boolean,
    f: (fs: GuestFs, rel: string) => Promise<T>,
  ): Promise<T> {
    const resolved = await this.resolve(path, follow);
    const { mount, rel } = this.route(resolved);
    return f(this.fsOf(path, mount), rel);
  }

  /**
   * `on` for a call that creates inodes: a create hook (GuestCreateXattrs) is given guest paths,
   * not the paths inside the mount.
   */
  private async onCreate<T, O extends GuestOwnerOptions>(
    path: string,
    follow: boolean,
    options: O | undefined,
    f: (fs: GuestFs, rel: string, options: O | undefined) => Promise<T>,
  ): Promise<T> {
    const resolved = await this.resolve(path, follow);
    const { mount, rel } = this.route(resolved);
    const hook = options?.createXattrs;
    const at = mount.mountpoint;
    const mapped =
      hook && options && at !== "/"
        ? { ...options, createXattrs: (p: string, t: GuestFileType) => hook(p === "/" ? at : at + p, t) }
        : options;
    return f(this.fsOf(path, mount), rel, mapped);
  }

  private async two<T>(
    a: string,
    b: string,
    followA: boolean,
    f: (fs: GuestFs, ra: string, rb: string) => Promise<T>,
  ): Promise<T> {
    const pa = this.route(await this.resolve(a, followA));
    const pb = this.route(await this.resolve(b, false));
    if (pa.mount !== pb.mount) {
      throw new GuestFsError(
        "EXDEV",
        b,
        `${a} and ${b} are on different filesystems (${pa.mount.mountpoint}, ${pb.mount.mountpoint})`,
      );
    }
    return f(this.fsOf(a, pa.mount), pa.rel, pb.rel);
  }

  /**
   * Stat of a path; the mount point of a filesystem we cannot read (an ESP's vfat) is answered by
   * the directory it is mounted on, so listings of its parent work — its contents stay EPERM.
   */
  private async statOn(path: string, follow: boolean): Promise<GuestStats> {
    const resolved = await this.resolve(path, follow);
    const { mount, rel } = this.route(resolved);
    if (!mount.fs && rel === "/") {
      const below = this.byDepth.find(
        (m) => m !== mount && m.fs && (m.mountpoint === "/" || resolved.startsWith(`${m.mountpoint}/`)),
      );
      if (below?.fs) {
        const inner = below.mountpoint === "/" ? resolved : resolved.slice(below.mountpoint.length);
        const st = await below.fs.lstat(inner).catch(() => undefined);
        if (st?.type === "directory") return st;
      }
    }
    return this.fsOf(path, mount)[follow ? "stat" : "lstat"](rel);
  }
  lstat(path: string): Promise<GuestStats> {
    return this.statOn(path, false);
  }
  stat(path: string): Promise<GuestStats> {
    return this.statOn(path, true);
  }
  readdir(path: string): Promise<string[]> {
    return this.on(path, true, (fs, p) => fs.readdir(p));
  }
  async readdirStats(path: string): Promise<GuestDirEntry[]> {
    const resolved = await this.resolve(path, true);
    const { mount, rel } = this.route(resolved);
    const fs = this.fsOf(path, mount);
    const inner = rel === "/" ? "/" : `${rel}/`;
    const entries = fs.readdirStats
      ? await fs.readdirStats(rel)
      : await Promise.all(
          (await fs.readdir(rel)).map(async (name) => ({ name, stats: await fs.lstat(inner + name) })),
        );
    if (this.mounts.length === 1) return entries;
    // A child that is a mount point stats as what lstat gives there (the mounted root, or for a
    // mount we cannot read, the directory below it).
    const prefix = resolved === "/" ? "/" : `${resolved}/`;
    return Promise.all(
      entries.map(async (e) =>
        this.mounts.some((m) => m.mountpoint === prefix + e.name)
          ? { name: e.name, stats: await this.lstat(prefix + e.name) }
          : e,
      ),
    );
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.on(path, true, (fs, p) => fs.readFile(p));
  }
  readFileOfEntry(path: string, stats: GuestStats): Promise<Uint8Array> {
    // A walk's path has no symlink to follow; the file itself is not one (its lstat says so).
    return this.on(path, false, (fs, p) =>
      fs.readFileOfEntry ? fs.readFileOfEntry(p, stats) : fs.readFile(p),
    );
  }
  readlink(path: string): Promise<string> {
    return this.on(path, false, (fs, p) => fs.readlink(p));
  }
  async mkdir(path: string, options?: GuestMkdirOptions): Promise<string | undefined> {
    if (!options?.recursive || this.mounts.length === 1)
      return this.onCreate(path, false, options, (fs, p, o) => fs.mkdir(p, o));
    // Recursive creation may cross mount points: create one level at a time.
    const parts = split(normalizeGuestPath(path));
    let first: string | undefined;
    for (let i = 1; i <= parts.length; i++) {
      const p = `/${parts.slice(0, i).join("/")}`;
      try {
        const st = await this.stat(p);
        if (st.type !== "directory") throw new GuestFsError("ENOTDIR", path, `${p} is not a directory`);
        continue;
      } catch (err) {
        if (!(err instanceof GuestFsError && err.code === "ENOENT")) throw err;
      }
      await this.onCreate(p, false, { ...options, recursive: false }, (fs, r, o) => fs.mkdir(r, o));
      first ??= p;
    }
    return first;
  }
  writeFile(path: string, data: GuestData, options?: GuestWriteOptions): Promise<void> {
    return this.onCreate(path, true, options, (fs, p, o) => fs.writeFile(p, data, o));
  }
  writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
    return this.on(path, true, (fs, p) => {
      if (!fs.writeAt) throw new GuestFsError("EPERM", path, "this filesystem cannot overwrite in place");
      return fs.writeAt(p, offset, data);
    });
  }
  symlink(target: string, path: string, options?: GuestOwnerOptions): Promise<void> {
    return this.onCreate(path, false, options, (fs, p, o) => fs.symlink(target, p, o));
  }
  link(existingPath: string, newPath: string): Promise<void> {
    return this.two(existingPath, newPath, false, (fs, a, b) => fs.link(a, b));
  }
  unlink(path: string): Promise<void> {
    return this.on(path, false, (fs, p) => fs.unlink(p));
  }
  async rmdir(path: string): Promise<void> {
    const resolved = await this.resolve(path, false);
    if (this.mounts.some((m) => m.mountpoint === resolved && m.mountpoint !== "/")) {
      throw new GuestFsError("EPERM", path, `${resolved} is a mount point`);
    }
    return this.on(path, false, (fs, p) => fs.rmdir(p));
  }
  rename(oldPath: string, newPath: string): Promise<void> {
    return this.two(oldPath, newPath, false, (fs, a, b) => fs.rename(a, b));
  }
  chmod(path: string, mode: number): Promise<void> {
    return this.on(path, true, (fs, p) => fs.chmod(p, mode));
  }
  chown(path: string, uid: number, gid: number): Promise<void> {
    return this.on(path, true, (fs, p) => fs.chown(p, uid, gid));
  }
  lchown(path: string, uid: number, gid: number): Promise<void> {
    return this.on(path, false, (fs, p) => fs.lchown(p, uid, gid));
  }
  utimes(path: string, atime: Date, mtime: Date): Promise<void> {
    return this.on(path, true, (fs, p) => fs.utimes(p, atime, mtime));
  }
  lutimes(path: string, atime: Date, mtime: Date): Promise<void> {
    return this.on(path, false, (fs, p) => fs.lutimes(p, atime, mtime));
  }
  mknod(
    path: string,
    type: GuestNodeType,
    mode: number,
    major?: number,
    minor?: number,
    owner?: GuestOwnerOptions,
  ): Promise<void> {
    return this.onCreate(path, false, owner, (fs, p, o) => fs.mknod(p, type, mode, major, minor, o));
  }
  setxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    return this.on(path, true, (fs, p) => fs.setxattr(p, name, value));
  }
  getxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    return this.on(path, true, (fs, p) => fs.getxattr(p, name));
  }
  listxattr(path: string): Promise<string[]> {
    return this.on(path, true, (fs, p) => fs.listxattr(p));
  }
  lsetxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    return this.on(path, false, (fs, p) => {
      if (!fs.lsetxattr)
        throw new GuestFsError("EPERM", path, "this filesystem cannot label a symlink itself");
      return fs.lsetxattr(p, name, value);
    });
  }
  lgetxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    return this.on(path, false, (fs, p) => (fs.lgetxattr ? fs.lgetxattr(p, name) : fs.getxattr(p, name)));
  }
}
