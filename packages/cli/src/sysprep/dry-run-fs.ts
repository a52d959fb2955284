/**
 * `sysprep --dry-run`: a GuestFs over the read-only guest where writes are recorded, not done.
 * Removed paths disappear from later reads (so an rm -rf walk and a second glob see what the real
 * run would), written files read back with their new content.
 */
import type {
  GuestData,
  GuestFs,
  GuestMkdirOptions,
  GuestNodeType,
  GuestOwnerOptions,
  GuestStats,
  GuestWriteOptions,
} from "../guest/guest-fs.js";
import { GuestFsError } from "../guest/guest-fs.js";

export class DryRunGuestFs implements GuestFs {
  private readonly removed = new Set<string>();
  private readonly written = new Map<string, Uint8Array>();

  constructor(private readonly inner: GuestFs) {}

  private gone(path: string): boolean {
    for (let p = path; p !== "" && p !== "/"; p = p.slice(0, p.lastIndexOf("/")) || "/")
      if (this.removed.has(p)) return true;
    return false;
  }

  private check(path: string): void {
    if (this.gone(path)) throw new GuestFsError("ENOENT", path, `no such file or directory: ${path}`);
  }

  async lstat(path: string): Promise<GuestStats> {
    this.check(path);
    const st = await this.inner.lstat(path);
    const w = this.written.get(path);
    return w ? { ...st, size: w.length } : st;
  }
  async stat(path: string): Promise<GuestStats> {
    this.check(path);
    const st = await this.inner.stat(path);
    const w = this.written.get(path);
    return w ? { ...st, size: w.length } : st;
  }
  async readdir(path: string): Promise<string[]> {
    this.check(path);
    const base = path === "/" ? "" : path;
    return (await this.inner.readdir(path)).filter((n) => !this.removed.has(`${base}/${n}`));
  }
  async readFile(path: string): Promise<Uint8Array> {
    this.check(path);
    return this.written.get(path) ?? this.inner.readFile(path);
  }
  readlink(path: string): Promise<string> {
    this.check(path);
    return this.inner.readlink(path);
  }
  async mkdir(_path: string, _options?: GuestMkdirOptions): Promise<string | undefined> {
    return undefined;
  }
  async writeFile(path: string, data: GuestData, _options?: GuestWriteOptions): Promise<void> {
    this.written.set(
      path,
      typeof data === "string"
        ? new TextEncoder().encode(data)
        : data instanceof Uint8Array
          ? data
          : new Uint8Array(0),
    );
  }
  async symlink(_target: string, _path: string, _options?: GuestOwnerOptions): Promise<void> {}
  async link(_existingPath: string, _newPath: string): Promise<void> {}
  async unlink(path: string): Promise<void> {
    this.removed.add(path);
  }
  async rmdir(path: string): Promise<void> {
    this.removed.add(path);
  }
  async rename(_oldPath: string, _newPath: string): Promise<void> {}
  async chmod(_path: string, _mode: number): Promise<void> {}
  async chown(_path: string, _uid: number, _gid: number): Promise<void> {}
  async lchown(_path: string, _uid: number, _gid: number): Promise<void> {}
  async utimes(_path: string, _atime: Date, _mtime: Date): Promise<void> {}
  async lutimes(_path: string, _atime: Date, _mtime: Date): Promise<void> {}
  async mknod(
    _path: string,
    _type: GuestNodeType,
    _mode: number,
    _major?: number,
    _minor?: number,
    _owner?: GuestOwnerOptions,
  ): Promise<void> {}
  async setxattr(_path: string, _name: string, _value: Uint8Array): Promise<void> {}
  getxattr(path: string, name: string): Promise<Uint8Array | undefined> {
    return this.inner.getxattr(path, name);
  }
  listxattr(path: string): Promise<string[]> {
    return this.inner.listxattr(path);
  }
}
