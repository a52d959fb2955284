/**
 * InjectTarget over a directory of the host, standing in for a guest root (chroot-free): guest
 * paths are resolved component by component with lstat/readlink so that symlinks are followed
 * INSIDE the directory and never lead out of it; the final component is handled with the l*
 * calls. Device nodes and xattrs, which Node cannot create, go through mknod(1) and setfattr(1).
 * Meant for tests and for preparing trees; races with other writers of the directory are not defended.
 */
import { execFile } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import * as fs from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { IoError, UnsupportedError } from "@imgpatch/disk";
import { InjectConflictError } from "./errors.js";
import { guestBasename, splitGuestPath } from "./guest-path.js";
import {
  type InjectTarget,
  type NodeType,
  resolveGuestPath,
  type TargetFileType,
  type TargetStat,
} from "./target.js";

const run = promisify(execFile);

function typeOfStats(st: import("node:fs").Stats): TargetFileType {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isCharacterDevice()) return "chardev";
  if (st.isBlockDevice()) return "blockdev";
  if (st.isFIFO()) return "fifo";
  return "socket";
}

let tmpCounter = 0;

export class HostDirTarget implements InjectTarget {
  constructor(readonly root: string) {}

  get name(): string {
    return this.root;
  }

  private host(guest: string): string {
    return join(this.root, ...splitGuestPath(guest));
  }

  private wrap(op: string, path: string, e: unknown): never {
    const code = (e as NodeJS.ErrnoException)?.code;
    if (code === "EEXIST" || code === "EISDIR" || code === "ENOTDIR" || code === "ENOTEMPTY") {
      throw new InjectConflictError(`${op}: ${(e as Error).message}`, { file: `${this.root}:${path}` });
    }
    throw new IoError(
      `${op} failed: ${(e as Error).message}`,
      { file: `${this.root}:${path}` },
      { cause: e },
    );
  }

  /** Host path of a guest path, intermediate symlinks resolved inside the root. */
  private async at(path: string, followFinal = false): Promise<string> {
    const resolved = await resolveGuestPath(
      path,
      {
        typeOf: async (p) => {
          try {
            return typeOfStats(await fs.lstat(this.host(p)));
          } catch {
            return undefined;
          }
        },
        readlink: (p) => fs.readlink(this.host(p)),
      },
      followFinal,
      this.root,
    );
    return this.host(resolved);
  }

  async lstat(path: string): Promise<TargetStat | undefined> {
    let st: import("node:fs").Stats;
    try {
      st = await fs.lstat(await this.at(path));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR") {
        return undefined;
      }
      return this.wrap("lstat", path, e);
    }
    return {
      type: typeOfStats(st),
      perms: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      size: st.size,
      mtime: Math.floor(st.mtimeMs / 1000),
      nlink: st.nlink,
      ino: st.ino,
      rdevMajor: (st.rdev >> 8) & 0xfff,
      rdevMinor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00),
    };
  }

  async readdir(path: string): Promise<string[]> {
    const p = await this.at(path, true);
    try {
      return (await fs.readdir(p)).sort();
    } catch (e) {
      return this.wrap("readdir", path, e);
    }
  }

  async exists(path: string): Promise<boolean> {
    return (await this.lstat(path)) !== undefined;
  }

  async readlink(path: string): Promise<string> {
    try {
      return await fs.readlink(await this.at(path));
    } catch (e) {
      return this.wrap("readlink", path, e);
    }
  }

  async *readFile(path: string): AsyncIterable<Uint8Array> {
    const p = await this.at(path, true);
    try {
      for await (const chunk of createReadStream(p)) yield chunk as Uint8Array;
    } catch (e) {
      this.wrap("read", path, e);
    }
  }

  async mkdir(path: string, perms: number): Promise<void> {
    const p = await this.at(path);
    try {
      await fs.mkdir(p, { mode: perms & 0o777 });
      await fs.chmod(p, perms & 0o7777);
    } catch (e) {
      this.wrap("mkdir", path, e);
    }
  }

  async writeFile(path: string, content: AsyncIterable<Uint8Array>, perms: number): Promise<void> {
    const p = await this.at(path);
    try {
      const st = await fs.lstat(p).catch(() => undefined);
      if (st?.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
      // Like rpm: write a temporary name next to it, then rename over the final one.
      const tmp = join(p, "..", `.${guestBasename(path)}.imgpatch-${process.pid}-${++tmpCounter}`);
      try {
        await pipeline(content, createWriteStream(tmp, { flags: "wx", mode: perms & 0o777 }));
        await fs.chmod(tmp, perms & 0o7777);
        await fs.rename(tmp, p);
      } catch (e) {
        await fs.rm(tmp, { force: true });
        throw e;
      }
    } catch (e) {
      if (e instanceof InjectConflictError) throw e;
      this.wrap("write", path, e);
    }
  }

  async symlink(target: string, path: string): Promise<void> {
    try {
      await fs.symlink(target, await this.at(path));
    } catch (e) {
      this.wrap("symlink", path, e);
    }
  }

  async link(existing: string, path: string): Promise<void> {
    try {
      await fs.link(await this.at(existing), await this.at(path));
    } catch (e) {
      this.wrap("link", path, e);
    }
  }

  async mknod(path: string, type: NodeType, perms: number, major: number, minor: number): Promise<void> {
    const p = await this.at(path);
    const mode = (perms & 0o7777).toString(8);
    try {
      if (type === "fifo") await run("mknod", ["-m", mode, p, "p"]);
      else if (type === "socket") throw new UnsupportedError("cannot create a socket node", { file: path });
      else await run("mknod", ["-m", mode, p, type === "chardev" ? "c" : "b", String(major), String(minor)]);
    } catch (e) {
      if (e instanceof UnsupportedError) throw e;
      this.wrap("mknod", path, e);
    }
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    try {
      await fs.lchown(await this.at(path), uid, gid);
    } catch (e) {
      this.wrap("chown", path, e);
    }
  }

  async chmod(path: string, perms: number): Promise<void> {
    try {
      await fs.chmod(await this.at(path), perms & 0o7777);
    } catch (e) {
      this.wrap("chmod", path, e);
    }
  }

  async utimes(path: string, atime: number, mtime: number): Promise<void> {
    try {
      await fs.lutimes(await this.at(path), atime, mtime);
    } catch (e) {
      this.wrap("utimes", path, e);
    }
  }

  async setxattr(path: string, name: string, value: Uint8Array): Promise<void> {
    try {
      await run("setfattr", [
        "-h",
        "-n",
        name,
        "-v",
        `0x${Buffer.from(value).toString("hex")}`,
        await this.at(path),
      ]);
    } catch (e) {
      this.wrap("setxattr", path, e);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    try {
      await fs.rename(await this.at(from), await this.at(to));
    } catch (e) {
      this.wrap("rename", from, e);
    }
  }

  async unlink(path: string): Promise<void> {
    try {
      await fs.unlink(await this.at(path));
    } catch (e) {
      this.wrap("unlink", path, e);
    }
  }

  async rmdir(path: string): Promise<void> {
    try {
      await fs.rmdir(await this.at(path));
    } catch (e) {
      this.wrap("rmdir", path, e);
    }
  }
}
