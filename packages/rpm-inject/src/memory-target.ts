/**
 * An in-memory guest tree implementing InjectTarget, for tests and dry runs. Inodes are shared by
 * hard links; xattrs, owners, modes and mtimes are kept per inode like a real filesystem.
 */
import { InjectConflictError } from "./errors.js";
import { guestBasename, guestDirname, joinGuestPath, splitGuestPath } from "./guest-path.js";
import {
  type InjectTarget,
  type NodeType,
  resolveGuestPath,
  type TargetFileType,
  type TargetStat,
} from "./target.js";

export interface MemoryNode {
  ino: number;
  type: TargetFileType;
  perms: number;
  uid: number;
  gid: number;
  atime: number;
  mtime: number;
  nlink: number;
  data?: Uint8Array;
  target?: string;
  entries?: Map<string, number>;
  rdevMajor: number;
  rdevMinor: number;
  xattrs: Map<string, Uint8Array>;
}

/** One line of a tree listing: what tests compare. */
export interface MemoryEntry {
  path: string;
  type: TargetFileType;
  perms: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  ino: number;
  nlink: number;
  target?: string;
  data?: Uint8Array;
  rdev?: [number, number];
  xattrs: Record<string, Uint8Array>;
}

export class MemoryTarget implements InjectTarget {
  private readonly nodes = new Map<number, MemoryNode>();
  private nextIno = 2;
  /** Counts mutating calls, so tests can assert that nothing was written. */
  mutations = 0;

  constructor(
    readonly name = "<memory>",
    /** Clock used for new nodes' times. */
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {
    this.nodes.set(1, this.makeNode(1, "dir", 0o755));
  }

  private makeNode(ino: number, type: TargetFileType, perms: number): MemoryNode {
    const t = this.now();
    return {
      ino,
      type,
      perms,
      uid: 0,
      gid: 0,
      atime: t,
      mtime: t,
      nlink: type === "dir" ? 2 : 1,
      rdevMajor: 0,
      rdevMinor: 0,
      xattrs: new Map(),
      entries: type === "dir" ? new Map() : undefined,
    };
  }

  private fail(msg: string, path: string): never {
    throw new InjectConflictError(msg, { file: `${this.name}:${path}` });
  }

  /** Looks up a symlink-free path. */
  private lookup(path: string): MemoryNode | undefined {
    let node = this.nodes.get(1) as MemoryNode;
    for (const c of splitGuestPath(path)) {
      if (node.type !== "dir") return undefined;
      const ino = node.entries?.get(c);
      if (ino === undefined) return undefined;
      node = this.nodes.get(ino) as MemoryNode;
    }
    return node;
  }

  private async resolve(path: string, followFinal = false): Promise<string> {
    return resolveGuestPath(
      path,
      {
        typeOf: async (p) => this.lookup(p)?.type,
        readlink: async (p) => this.lookup(p)?.target ?? "",
      },
      followFinal,
      this.name,
    );
  }

  private async node(path: string, followFinal = false): Promise<MemoryNode | undefined> {
    return this.lookup(await this.resolve(path, followFinal));
  }

  private async parentOf(path: string): Promise<{ dir: MemoryNode; name: string; resolved: string }> {
    const resolved = await this.resolve(path);
    const dir = this.lookup(guestDirname(resolved));
    if (!dir) this.fail("parent directory does not exist", path);
    if (dir.type !== "dir") this.fail("parent is not a directory", path);
    return { dir, name: guestBasename(resolved), resolved };
  }

  private async existing(path: string): Promise<MemoryNode> {
    const n = await this.node(path);
    if (!n) this.fail("no such file or directory", path);
    return n;
  }

  private attach(dir: MemoryNode, name: string, node: MemoryNode): void {
    dir.entries?.set(name, node.ino);
    this.nodes.set(node.ino, node);
    if (node.type === "dir") dir.nlink++;
    dir.mtime = this.now();
  }

  private detach(dir: MemoryNode, name: string): void {
    const ino = dir.entries?.get(name);
    if (ino === undefined) return;
    const n = this.nodes.get(ino) as MemoryNode;
    dir.entries?.delete(name);
    if (n.type === "dir") dir.nlink--;
    if (--n.nlink <= 0 || n.type === "dir") this.nodes.delete(ino);
    dir.mtime = this.now();
  }

  async lstat(path: string): Promise<TargetStat | undefined> {
    const n = await this.node(path);
    if (!n) return undefined;
    return {
      type: n.type,
      perms: n.perms,
      uid: n.uid,
      gid: n.gid,
      size:
        n.type === "file"
          ? (n.data?.length ?? 0)
          : n.type === "symlink"
            ? Buffer.byteLength(n.target ?? "")
            : 0,
      mtime: n.mtime,
      nlink: n.nlink,
      ino: n.ino,
      rdevMajor: n.rdevMajor,
      rdevMinor: n.rdevMinor,
    };
  }

  async readdir(path: string): Promise<string[]> {
    const n = await this.node(path, true);
    if (!n) this.fail("no such file or directory", path);
    if (n.type !== "dir") this.fail("not a directory", path);
    return [...(n.entries?.keys() ?? [])].sort();
  }

  async exists(path: string): Promise<boolean> {
    return (await this.node(path)) !== undefined;
  }

  async readlink(path: string): Promise<string> {
    const n = await this.existing(path);
    if (n.type !== "symlink") this.fail("not a symlink", path);
    return n.target ?? "";
  }

  async *readFile(path: string): AsyncIterable<Uint8Array> {
    const n = await this.node(path, true);
    if (!n) this.fail("no such file", path);
    if (n.type !== "file") this.fail("not a regular file", path);
    yield n.data ?? new Uint8Array(0);
  }

  async mkdir(path: string, perms: number): Promise<void> {
    this.mutations++;
    const { dir, name } = await this.parentOf(path);
    if (dir.entries?.has(name)) this.fail("already exists", path);
    this.attach(dir, name, this.makeNode(this.nextIno++, "dir", perms & 0o7777));
  }

  private replaceWith(dir: MemoryNode, name: string, node: MemoryNode, path: string): void {
    const old = dir.entries?.get(name);
    if (old !== undefined) {
      if (this.nodes.get(old)?.type === "dir") this.fail("is a directory", path);
      this.detach(dir, name);
    }
    this.attach(dir, name, node);
  }

  async writeFile(
    path: string,
    content: AsyncIterable<Uint8Array>,
    perms: number,
    size?: number,
  ): Promise<void> {
    this.mutations++;
    const { dir, name } = await this.parentOf(path);
    const parts: Uint8Array[] = [];
    for await (const c of content) parts.push(Uint8Array.from(c));
    const node = this.makeNode(this.nextIno++, "file", perms & 0o7777);
    node.data = Buffer.concat(parts);
    // The size hint is a promise of the caller: hold it to it, as an image writer would have to.
    if (size !== undefined && node.data.length !== size) {
      this.fail(`content is ${node.data.length} bytes, the size hint said ${size}`, path);
    }
    this.replaceWith(dir, name, node, path);
  }

  async symlink(target: string, path: string): Promise<void> {
    this.mutations++;
    const { dir, name } = await this.parentOf(path);
    if (dir.entries?.has(name)) this.fail("already exists", path);
    const node = this.makeNode(this.nextIno++, "symlink", 0o777);
    node.target = target;
    this.attach(dir, name, node);
  }

  async link(existing: string, path: string): Promise<void> {
    this.mutations++;
    const src = await this.existing(existing);
    if (src.type === "dir") this.fail("cannot hard-link a directory", existing);
    const { dir, name } = await this.parentOf(path);
    if (dir.entries?.has(name)) this.fail("already exists", path);
    src.nlink++;
    dir.entries?.set(name, src.ino);
    dir.mtime = this.now();
  }

  async mknod(path: string, type: NodeType, perms: number, major: number, minor: number): Promise<void> {
    this.mutations++;
    const { dir, name } = await this.parentOf(path);
    if (dir.entries?.has(name)) this.fail("already exists", path);
    const node = this.makeNode(this.nextIno++, type, perms & 0o7777);
    node.rdevMajor = major;
    node.rdevMinor = minor;
    this.attach(dir, name, node);
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    this.mutations++;
    const n = await this.existing(path);
    n.uid = uid;
    n.gid = gid;
    // Like Linux: changing the owner of a non-directory clears setuid/setgid and file capabilities.
    if (n.type === "file") {
      n.perms &= ~0o6000;
      n.xattrs.delete("security.capability");
    }
  }

  async chmod(path: string, perms: number): Promise<void> {
    this.mutations++;
    const n = await this.existing(path);
    n.perms = perms & 0o7777;
  }

  async utimes(path: string, atime: number, mtime: number): Promise<void> {
    this.mutations++;
    const n = await this.existing(path);
    n.atime = atime;
    n.mtime = mtime;
  }

  async setxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    this.mutations++;
    const n = await this.existing(path);
    n.xattrs.set(name, Uint8Array.from(value));
  }

  async rename(from: string, to: string): Promise<void> {
    this.mutations++;
    const src = await this.parentOf(from);
    const ino = src.dir.entries?.get(src.name);
    if (ino === undefined) this.fail("no such file or directory", from);
    const node = this.nodes.get(ino) as MemoryNode;
    const dst = await this.parentOf(to);
    src.dir.entries?.delete(src.name);
    if (node.type === "dir") src.dir.nlink--;
    this.replaceWith(dst.dir, dst.name, node, to);
  }

  async unlink(path: string): Promise<void> {
    this.mutations++;
    const { dir, name } = await this.parentOf(path);
    const ino = dir.entries?.get(name);
    if (ino === undefined) this.fail("no such file", path);
    if (this.nodes.get(ino)?.type === "dir") this.fail("is a directory", path);
    this.detach(dir, name);
  }

  async rmdir(path: string): Promise<void> {
    this.mutations++;
    const { dir, name } = await this.parentOf(path);
    const ino = dir.entries?.get(name);
    const n = ino === undefined ? undefined : this.nodes.get(ino);
    if (n?.type !== "dir") this.fail("not a directory", path);
    if ((n.entries?.size ?? 0) > 0) this.fail("directory not empty", path);
    this.detach(dir, name);
  }

  /** Every entry below `from` in path order (the root excluded). */
  list(from = "/"): MemoryEntry[] {
    const out: MemoryEntry[] = [];
    const walk = (dirPath: string, dir: MemoryNode) => {
      for (const name of [...(dir.entries?.keys() ?? [])].sort()) {
        const n = this.nodes.get(dir.entries?.get(name) as number) as MemoryNode;
        const path = joinGuestPath(dirPath, name);
        out.push({
          path,
          type: n.type,
          perms: n.perms,
          uid: n.uid,
          gid: n.gid,
          mtime: n.mtime,
          size: n.type === "file" ? (n.data?.length ?? 0) : 0,
          ino: n.ino,
          nlink: n.nlink,
          target: n.target,
          data: n.data,
          rdev: n.type === "chardev" || n.type === "blockdev" ? [n.rdevMajor, n.rdevMinor] : undefined,
          xattrs: Object.fromEntries(n.xattrs),
        });
        if (n.type === "dir") walk(path, n);
      }
    };
    const start = this.lookup(from);
    if (start?.type === "dir") walk(from === "/" ? "/" : from, start);
    return out;
  }

  /** Convenience for tests: creates parents as needed and writes a file. */
  async put(path: string, content: string | Uint8Array, perms = 0o644, uid = 0, gid = 0): Promise<void> {
    await this.ensureDir(guestDirname(path));
    const data = typeof content === "string" ? new TextEncoder().encode(content) : content;
    await this.writeFile(
      path,
      (async function* () {
        yield data;
      })(),
      perms,
    );
    await this.chown(path, uid, gid);
    await this.chmod(path, perms);
  }

  async ensureDir(path: string, perms = 0o755): Promise<void> {
    let cur = "/";
    for (const c of splitGuestPath(path)) {
      cur = joinGuestPath(cur, c);
      if (!(await this.exists(cur))) await this.mkdir(cur, perms);
    }
  }
}
