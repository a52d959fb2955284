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
 *
 * Labels are written with the inode when the filesystem offers it: every create call passes a
 * `createXattrs` hook (GuestCreateXattrs), which the ext4 and XFS editors call for each inode
 * they make; when the new name's directory has a known real path (resolved before the write, or
 * made by this wrapper) the label is computed there and stored with the inode (ext4: in-inode
 * space; XFS: the attribute fork's short form) — no second pass, no setxattr per file.
 *
 * Everything else (a replaced file, a hard link, a moved tree, a filesystem that does not call
 * the hook, a name under a directory not resolved yet) is recorded and labelled by
 * `flushLabels()` (openGuest's commit calls it), not one by one: the ext4 editor must flush its
 * pending writes before any read, so resolving paths between writes would flush once per file.
 * At the flush every recorded path is read first (real path, type), then every label is written;
 * what was created under a directory this wrapper created needs no read at all. A path removed
 * since is skipped; a renamed one is followed; a label a caller set explicitly (tar --xattrs) is
 * kept.
 */
import {
  contextXattr,
  type FileContexts,
  type GuestPolicy,
  HOMEDIR_INPUTS,
  loadGuestPolicy,
  modeOfType,
  type RelabelReport,
  relabelTree,
  SELINUX_XATTR,
  type TreeFileType,
} from "@imgpatch/selinux";
import {
  type GuestCreateXattrs,
  type GuestData,
  type GuestFileType,
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
  /** Labels written by flushLabels (not counting relabelAll). */
  labelled: number;
  /** Of those, labels given to inodes as they were created (the create hook). */
  atCreate: number;
}

interface PendingLabel {
  path: string;
  /** The real path, when known without reading (under a directory this wrapper created). */
  real?: string;
  /** Known when the wrapper made it; else read at the flush. */
  type?: TreeFileType;
  /** A final symlink is followed (writeFile writes through it). */
  follow?: boolean;
  /** A moved directory: its whole subtree. */
  subtree?: boolean;
}

export class SelinuxLabelingGuestFs implements GuestFs {
  readonly inner: GuestFs;
  private policyNow?: GuestPolicy;
  readonly stats: SelinuxLabelStats = { labelled: 0, atCreate: 0 };
  private contexts?: FileContexts;
  /** A file the homedirs expansion reads (passwd …) was written: load the policy again. */
  private homedirInputsChanged = false;
  /** Real (symlink-free) paths of directories already resolved; dropped when a path is removed or moved. */
  private readonly realDirs = new Map<string, string>();
  private pending: PendingLabel[] = [];
  /** Real paths of directories this wrapper created: nothing in them predates the run. */
  private readonly createdDirs = new Set<string>();
  /** Real paths of symlinks this wrapper created. */
  private readonly createdLinks = new Set<string>();
  /** The create hook's answer per context (see labelAtCreate). */
  private readonly labelXattrs = new Map<string, Readonly<Record<string, Uint8Array>>>();

  constructor(inner: GuestFs, policy?: GuestPolicy) {
    this.inner = inner;
    this.policyNow = policy;
    this.contexts = policy?.contexts;
  }

  /** The policy labels come from (loaded again after a user was added, see homedirs). */
  get policy(): GuestPolicy | undefined {
    return this.policyNow;
  }

  /** Records a write to a file the homedirs expansion reads (when the guest has a template). */
  private touched(path: string): void {
    if (this.policyNow?.homedirTemplate !== undefined && HOMEDIR_INPUTS.has(normalizeGuestPath(path)))
      this.homedirInputsChanged = true;
  }

  /**
   * After passwd (or login.defs …) changed: the homedirs genhomedircon would write now, so a
   * user added in this job gets its home's labels (the files, and the labels of what follows).
   */
  private async refreshHomedirs(): Promise<void> {
    if (!this.homedirInputsChanged) return;
    this.homedirInputsChanged = false;
    const policy = await loadGuestPolicy(this.inner, { compile: false });
    if (!policy) return;
    this.policyNow = policy;
    this.contexts = policy.contexts;
  }

  /** Wraps `fs` with the guest's own policy (loaded now); no policy: calls pass through. */
  static async open(fs: GuestFs): Promise<SelinuxLabelingGuestFs> {
    // expressions are translated when first needed (a spec we cannot follow fails the flush,
    // before the commit); translating all ~5,000 of a distribution policy up front costs more
    // than labelling a typical job
    return new SelinuxLabelingGuestFs(fs, await loadGuestPolicy(fs, { compile: false }));
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
    return (await this.realPathAndType(path, follow)).real;
  }

  /** realPath, and with `follow` the type found at the end (no second lstat). */
  private async realPathAndType(
    path: string,
    follow: boolean,
  ): Promise<{ real: string; type?: TreeFileType }> {
    const p = normalizeGuestPath(path);
    if (p === "/") return { real: "/" };
    let real = joinPath(await this.realDir(parentOf(p)), baseOf(p));
    if (follow) {
      for (let hops = 0; ; hops++) {
        const st: GuestStats = await this.inner.lstat(real);
        if (st.type !== "symlink") return { real, type: st.type };
        if (hops >= MAX_SYMLINKS) throw new GuestFsError("ELOOP", path, "too many levels of symbolic links");
        const target = await this.inner.readlink(real);
        const abs = target.startsWith("/") ? target : joinPath(parentOf(real), target);
        const n = normalizeGuestPath(abs);
        real = n === "/" ? "/" : joinPath(await this.realDir(parentOf(n)), baseOf(n));
      }
    }
    return { real };
  }

  /** Forgets what is known about `path` and below (after it was removed, replaced or moved). */
  private invalidate(path: string): void {
    const p = normalizeGuestPath(path);
    const under = (x: string) => x === p || x.startsWith(`${p}/`);
    for (const [k, v] of this.realDirs) if (under(k) || under(v)) this.realDirs.delete(k);
    for (const set of [this.createdDirs, this.createdLinks]) for (const x of set) if (under(x)) set.delete(x);
  }

  /**
   * The real path of a path about to be created, when its directory's real path is cached and
   * that directory was created by this wrapper (so the name cannot be an older symlink).
   */
  private knownReal(path: string): string | undefined {
    const p = normalizeGuestPath(path);
    const dir = this.realDirs.get(parentOf(p)) ?? (parentOf(p) === "/" ? "/" : undefined);
    if (dir === undefined || !this.createdDirs.has(dir)) return undefined;
    const real = joinPath(dir, baseOf(p));
    return this.createdLinks.has(real) ? undefined : real;
  }

  /**
   * The create hook: the label of a new inode when its directory's real path is known (cached
   * by warmParent or a directory made in this run); undefined otherwise, and the path is then
   * recorded for the flush by the caller (it is not in `seen`, the call's answered paths).
   */
  private labelAtCreate(
    path: string,
    type: GuestFileType,
    seen: Set<string>,
  ): Readonly<Record<string, Uint8Array>> | undefined {
    const contexts = this.contexts;
    // "." and ".." are resolved by the filesystem after symlinks: leave those names to the flush
    if (!contexts || /(^|\/)\.\.?(\/|$)/.test(path)) return undefined;
    const p = normalizeGuestPath(path);
    if (p === "/") return undefined;
    const dir = parentOf(p);
    const parentReal = dir === "/" ? "/" : this.realDirs.get(dir);
    if (parentReal === undefined) return undefined;
    const real = joinPath(parentReal, baseOf(p));
    seen.add(p);
    if (type === "directory") {
      // mkdir -p: the next level's parent
      this.realDirs.set(p, real);
      this.createdDirs.add(real);
    }
    const context = contexts.lookup(real, modeOfType(type));
    if (context === null) return undefined;
    this.stats.labelled++;
    this.stats.atCreate++;
    // one object per context: the editor reuses the in-inode bytes it laid out for it
    let xattrs = this.labelXattrs.get(context);
    if (!xattrs) {
      xattrs = { [SELINUX_XATTR]: contextXattr(context) };
      this.labelXattrs.set(context, xattrs);
    }
    return xattrs;
  }

  /**
   * Runs a create call with the create hook in its options (when labels are written; chained
   * after a caller's own hook); returns the paths the hook labelled. A failed call forgets what
   * the hook assumed about the names it saw.
   */
  private async created<T extends GuestOwnerOptions>(
    options: T | undefined,
    call: (options: T | undefined) => Promise<unknown>,
  ): Promise<Set<string>> {
    const seen = new Set<string>();
    if (!this.contexts) {
      await call(options);
      return seen;
    }
    await this.refreshHomedirs();
    const own = options?.createXattrs;
    const hook: GuestCreateXattrs = (p, t) => {
      const mine = this.labelAtCreate(p, t, seen);
      const theirs = own?.(p, t);
      return mine && theirs ? { ...mine, ...theirs } : (theirs ?? mine);
    };
    try {
      await call({ ...(options ?? ({} as T)), createXattrs: hook });
    } catch (err) {
      for (const p of seen) this.invalidate(p);
      throw err;
    }
    return seen;
  }

  private note(entry: PendingLabel): void {
    if (this.contexts) this.pending.push({ ...entry, path: normalizeGuestPath(entry.path) });
  }

  private setLabel(path: string, context: string): Promise<void> {
    const v = contextXattr(context);
    if (this.inner.lsetxattr) return this.inner.lsetxattr(path, SELINUX_XATTR, v);
    return this.inner.setxattr(path, SELINUX_XATTR, v);
  }

  /** Writes the labels of every path recorded since the last flush (see the module comment). */
  async flushLabels(): Promise<number> {
    await this.refreshHomedirs();
    const contexts = this.contexts;
    if (!contexts || this.pending.length === 0) return 0;
    const pending = this.pending;
    this.pending = [];
    // reads first: real paths and types (a later entry for the same path wins)
    const todo = new Map<string, TreeFileType>();
    const subtrees: string[] = [];
    for (const e of pending) {
      let real: string;
      let type: TreeFileType;
      try {
        if (e.real !== undefined && e.type !== undefined) {
          real = e.real;
          type = e.type;
        } else {
          const r = await this.realPathAndType(e.path, e.follow === true);
          real = r.real;
          type = r.type ?? e.type ?? (await this.inner.lstat(real)).type;
        }
      } catch (err) {
        if (isGuestError(err, "ENOENT") || isGuestError(err, "ENOTDIR")) continue; // removed since
        throw err;
      }
      todo.delete(real);
      todo.set(real, type);
      if (e.subtree && type === "directory") subtrees.push(real);
    }
    for (const root of subtrees) {
      const stack = [root];
      while (stack.length > 0) {
        const dir = stack.pop() as string;
        for (const name of await this.inner.readdir(dir)) {
          const p = joinPath(dir, name);
          const t = (await this.inner.lstat(p)).type;
          todo.set(p, t);
          if (t === "directory") stack.push(p);
        }
      }
    }
    // then the writes
    let n = 0;
    for (const [path, type] of todo) {
      if (type === "symlink" && !this.inner.lsetxattr) continue;
      const context = contexts.lookup(path, modeOfType(type));
      if (context === null) continue;
      await this.setLabel(path, context);
      n++;
    }
    this.stats.labelled += n;
    return n;
  }

  /** Relabels a subtree or, from "/", every mounted filesystem we can edit (recorded labels first). */
  async relabel(root = "/"): Promise<RelabelReport | undefined> {
    if (!this.contexts) return undefined;
    await this.flushLabels();
    const fs = this.inner;
    return relabelTree(
      {
        readdir: (p) => fs.readdir(p),
        lstat: (p) => fs.lstat(p),
        lsetxattr: (p, n, v) => (fs.lsetxattr ? fs.lsetxattr(p, n, v) : fs.setxattr(p, n, v)),
      },
      this.contexts,
      {
        root: await this.realPath(root, false),
        // mounts imgpatch cannot edit (vfat ESP, read-only volumes) are left as they are
        onError: (_p, err) => isGuestError(err, "EPERM"),
      },
    );
  }

  /**
   * Offline `setfiles -F /`: undefined when the guest has no active policy. Also labels each
   * mount point's directory in the filesystem below it (hidden behind the mount, so setfiles on
   * a running system never reaches it; the kernel sees it until the mount is made).
   */
  async relabelAll(): Promise<RelabelReport | undefined> {
    const report = await this.relabel("/");
    const contexts = this.contexts;
    const mounts = (this.inner as { mounts?: ReadonlyArray<{ mountpoint: string; fs?: GuestFs }> }).mounts;
    if (!report || !contexts || !mounts) return report;
    for (const m of mounts) {
      if (m.mountpoint === "/") continue;
      const below = mounts
        .filter(
          (o) =>
            o.mountpoint !== m.mountpoint &&
            (o.mountpoint === "/" || m.mountpoint.startsWith(`${o.mountpoint}/`)),
        )
        .sort((a, b) => b.mountpoint.length - a.mountpoint.length)[0];
      const fs = below?.fs;
      if (!fs) continue;
      const rel = below.mountpoint === "/" ? m.mountpoint : m.mountpoint.slice(below.mountpoint.length);
      const context = contexts.lookup(m.mountpoint, modeOfType("directory"));
      if (context === null) continue;
      try {
        if ((await fs.lstat(rel)).type !== "directory") continue;
        await (fs.lsetxattr ?? fs.setxattr).call(fs, rel, SELINUX_XATTR, contextXattr(context));
        report.changed++;
      } catch (err) {
        if (!isGuestError(err, "ENOENT") && !isGuestError(err, "EPERM")) throw err;
      }
    }
    return report;
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

  // ---------------------------------------------------------------- writes, labels recorded
  /**
   * Resolves the nearest existing ancestor directory of a path about to be created (a read, so
   * done before the write; cached, so once per directory), letting what is created below it be
   * labelled at the flush without reads.
   */
  private async warmParent(p: string): Promise<void> {
    for (let d = parentOf(p); ; d = parentOf(d)) {
      if (d === "/" || this.realDirs.has(d)) return;
      try {
        await this.realDir(d);
        return;
      } catch (err) {
        if (!isGuestError(err, "ENOENT") && !isGuestError(err, "ENOTDIR")) return;
      }
    }
  }

  async mkdir(path: string, options?: GuestMkdirOptions): Promise<string | undefined> {
    if (this.contexts) await this.warmParent(normalizeGuestPath(path));
    let first: string | undefined;
    const seen = await this.created(options, async (o) => {
      first = await this.inner.mkdir(path, o);
    });
    if (!this.contexts) return first;
    const made = (p: string) => {
      if (seen.has(p)) return; // labelled with the inode
      // a new directory: its real path is its parent's real path (when cached) and its name
      const parentReal = this.realDirs.get(parentOf(p)) ?? (parentOf(p) === "/" ? "/" : undefined);
      const real = parentReal === undefined ? undefined : joinPath(parentReal, baseOf(p));
      if (real !== undefined) {
        this.realDirs.set(p, real);
        this.createdDirs.add(real);
      }
      this.note({ path: p, real, type: "directory" });
    };
    if (!options?.recursive) {
      made(normalizeGuestPath(path));
      return first;
    }
    if (first === undefined) return first;
    // every directory from the first created one down to `path`
    const target = normalizeGuestPath(path);
    let cur = normalizeGuestPath(first);
    made(cur);
    for (const name of target.slice(cur.length).split("/").filter(Boolean)) {
      cur = joinPath(cur, name);
      made(cur);
    }
    return first;
  }
  /** Overwriting bytes in place keeps the file's label: nothing to record. */
  writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
    if (!this.inner.writeAt)
      throw new GuestFsError("EPERM", path, "this filesystem cannot overwrite in place");
    this.touched(path);
    return this.inner.writeAt(path, offset, data);
  }

  async writeFile(path: string, data: GuestData, options?: GuestWriteOptions): Promise<void> {
    if (this.contexts) await this.warmParent(normalizeGuestPath(path));
    const seen = await this.created(options, (o) => this.inner.writeFile(path, data, o));
    this.touched(path);
    if (!this.contexts || seen.has(normalizeGuestPath(path))) return;
    const real = this.knownReal(path);
    this.note(real !== undefined ? { path, real, type: "file" } : { path, type: "file", follow: true });
  }
  async symlink(target: string, path: string, options?: GuestOwnerOptions): Promise<void> {
    if (this.contexts) await this.warmParent(normalizeGuestPath(path));
    const real = this.knownReal(path);
    const seen = await this.created(options, (o) => this.inner.symlink(target, path, o));
    const labelled = seen.has(normalizeGuestPath(path));
    this.invalidate(path);
    if (real !== undefined) this.createdLinks.add(real);
    if (!labelled) this.note({ path, real, type: "symlink" });
  }
  async link(existingPath: string, newPath: string): Promise<void> {
    await this.inner.link(existingPath, newPath);
    this.note({ path: newPath });
  }
  async unlink(path: string): Promise<void> {
    await this.inner.unlink(path);
    this.invalidate(path);
  }
  async rmdir(path: string): Promise<void> {
    await this.inner.rmdir(path);
    this.invalidate(path);
  }
  async rename(oldPath: string, newPath: string): Promise<void> {
    await this.inner.rename(oldPath, newPath);
    this.touched(newPath);
    // rare: drop what is known and resolve everything recorded again at the flush
    this.realDirs.clear();
    this.createdDirs.clear();
    this.createdLinks.clear();
    for (const e of this.pending) e.real = undefined;
    if (!this.contexts) return;
    // recorded paths under the old name follow it
    const from = normalizeGuestPath(oldPath);
    const to = normalizeGuestPath(newPath);
    for (const e of this.pending) {
      if (e.path === from) e.path = to;
      else if (e.path.startsWith(`${from}/`)) e.path = to + e.path.slice(from.length);
    }
    this.note({ path: to, subtree: true });
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
    if (this.contexts) await this.warmParent(normalizeGuestPath(path));
    const real = this.knownReal(path);
    const seen = await this.created(owner, (o) => this.inner.mknod(path, type, mode, major, minor, o));
    if (!seen.has(normalizeGuestPath(path))) this.note({ path, real, type });
  }
  setxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    if (name === SELINUX_XATTR) this.forget(path);
    return this.inner.setxattr(path, name, value);
  }
  /** A label set explicitly (tar --xattrs, a caller's choice) is kept: the path leaves the queue. */
  private forget(path: string): void {
    const p = normalizeGuestPath(path);
    this.pending = this.pending.filter((e) => e.path !== p);
  }
  lsetxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    if (name === SELINUX_XATTR) this.forget(path);
    return this.inner.lsetxattr
      ? this.inner.lsetxattr(path, name, value)
      : this.inner.setxattr(path, name, value);
  }
}

/** The wrapper inside a GuestFs, when there is one. */
export function selinuxLabeler(fs: GuestFs): SelinuxLabelingGuestFs | undefined {
  return fs instanceof SelinuxLabelingGuestFs ? fs : undefined;
}
