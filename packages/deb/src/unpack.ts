/**
 * Unpacks a .deb's data member into a guest, as `dpkg --unpack` leaves it:
 *
 * - paths are the package's ("./usr/bin/x"); "..", NUL and over-long names are refused, and every
 *   parent directory is resolved inside the guest (a symlinked /lib → usr/lib is followed, an
 *   absolute link target starts at the guest root), so nothing lands outside it;
 * - diversions held by other packages (or local ones) send the file to its diverted name;
 * - existing directories are kept as they are (dpkg never re-modes them); a directory where the
 *   package has a non-directory, or the reverse, is a conflict;
 * - conffiles are written as "PATH.dpkg-new": `dpkg --configure` later moves them into place, or
 *   keeps a locally modified file and leaves the new one beside it;
 * - owners by name from the tar header when the guest knows the name, otherwise the numeric ids;
 *   modes (setuid included, applied after chown), mtimes, hard links, symlinks, device nodes.
 *
 * The MD5 of every regular file is computed while it streams: it is checked against the package's
 * md5sums when it ships one, and makes the md5sums file when it does not (as dpkg does).
 */
import { createHash } from "node:crypto";
import { ChecksumError } from "@imgpatch/disk";
import {
  guestBasename,
  guestDirname,
  joinGuestPath,
  MAX_NAME,
  MAX_PATH,
  type OwnerDb,
  type PkgTarget,
  readOwnerDb,
  resolveGuestPath,
} from "@imgpatch/pkgkit";
import type { DebFile } from "./deb-file.js";
import { DebConflictError, DebPathError } from "./errors.js";
import type { DpkgState } from "./status.js";
import { readTar, type TarEntry } from "./tar.js";

export interface UnpackResult {
  /** Package paths in archive order ("/." first), as dpkg's info/PKG.list holds them. */
  list: string[];
  /** MD5 of every regular file by package path (without the leading "/"). */
  md5: Map<string, string>;
  /** Regular files and bytes written. */
  files: number;
  bytes: number;
  /** Conffiles written as .dpkg-new (guest paths after diversion). */
  newConffiles: string[];
}

/**
 * A package member name as an absolute package path: "./usr/bin/x" → "/usr/bin/x", "./" → "/".
 * Refuses "..", NUL, empty middle components after normalization and over-long names.
 */
export function debPath(raw: string, where: { file?: string; offset?: number } = {}): string {
  if (raw.includes("\0")) throw new DebPathError(`path ${JSON.stringify(raw)} contains NUL`, where);
  if (raw.length > MAX_PATH) throw new DebPathError(`path longer than ${MAX_PATH} bytes`, where);
  const parts: string[] = [];
  for (const p of raw.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") throw new DebPathError(`path "${raw}" contains a ".." component`, where);
    if (Buffer.byteLength(p) > MAX_NAME)
      throw new DebPathError(`path component longer than ${MAX_NAME}`, where);
    parts.push(p);
  }
  return `/${parts.join("/")}`;
}

export function parseMd5sums(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]{32}) [ *]?(.+)$/.exec(line.trim());
    if (m) out.set(m[2].replace(/^\.?\//, ""), m[1]);
  }
  return out;
}

class GuestPaths {
  private readonly parents = new Map<string, string>();
  constructor(
    private readonly target: PkgTarget,
    private readonly state: DpkgState,
    private readonly pkg: string,
  ) {}

  /** Guest path a package path is written at: diversion, then parents resolved inside the guest. */
  async place(path: string): Promise<string> {
    const d = this.state.diversions.get(path);
    const diverted = d && d.by !== this.pkg ? d.to : path;
    const dir = guestDirname(diverted);
    let parent = this.parents.get(dir);
    if (parent === undefined) {
      parent = await resolveGuestPath(
        dir,
        {
          typeOf: async (p) => (await this.target.lstat(p))?.type,
          readlink: (p) => this.target.readlink(p),
        },
        true,
        this.target.name,
      );
      this.parents.set(dir, parent);
    }
    return joinGuestPath(parent, guestBasename(diverted));
  }

  /** A symlink was created: cached parent resolutions may be stale. */
  forget(): void {
    this.parents.clear();
  }
}

async function* hashing(
  data: AsyncIterable<Uint8Array>,
  onDone: (md5: string, size: number) => void,
): AsyncIterable<Uint8Array> {
  const h = createHash("md5");
  let size = 0;
  for await (const c of data) {
    h.update(c);
    size += c.length;
    yield c;
  }
  onDone(h.digest("hex"), size);
}

function ownerOf(e: TarEntry, owners: OwnerDb): { uid: number; gid: number } {
  return {
    uid: (e.uname ? owners.users.get(e.uname) : undefined) ?? e.uid,
    gid: (e.gname ? owners.groups.get(e.gname) : undefined) ?? e.gid,
  };
}

/** Unpacks every member of the data archive into the guest. */
export async function unpackDeb(deb: DebFile, target: PkgTarget, state: DpkgState): Promise<UnpackResult> {
  const owners = await readOwnerDb(target);
  const conffiles = new Set(deb.conffiles);
  const shipped = deb.controlFiles.get("md5sums");
  const expected = shipped ? parseMd5sums(Buffer.from(shipped).toString("utf8")) : undefined;
  const paths = new GuestPaths(target, state, deb.package);
  const result: UnpackResult = { list: [], md5: new Map(), files: 0, bytes: 0, newConffiles: [] };
  const placed = new Map<string, string>();
  const created = new Set<string>();
  const where = `${deb.name}:data.tar`;

  for await (const { entry, data } of readTar(deb.data(), where)) {
    const at = { file: where, offset: entry.offset };
    const pkgPath = debPath(entry.name, at);
    if (pkgPath === "/") {
      result.list.push("/.");
      continue;
    }
    result.list.push(pkgPath);
    let dest = await paths.place(pkgPath);
    // Inside a directory this unpack created, nothing exists yet: no lookup (a miss costs an error).
    const fresh = created.has(guestDirname(dest));
    const existing = fresh ? undefined : await target.lstat(dest);
    const { uid, gid } = ownerOf(entry, owners);

    if (entry.type === "dir") {
      if (existing?.type === "dir") continue;
      if (existing?.type === "symlink") {
        const resolved = await target.lstat(
          await resolveGuestPath(
            dest,
            { typeOf: async (p) => (await target.lstat(p))?.type, readlink: (p) => target.readlink(p) },
            true,
            target.name,
          ),
        );
        if (resolved?.type === "dir") continue;
      }
      if (existing)
        throw new DebConflictError(
          `${deb.package}: ${pkgPath} is a directory in the package but ${existing.type} in the guest`,
          at,
        );
      if (target.mkdirAttrs)
        await target.mkdirAttrs(dest, { perms: entry.mode, uid, gid, mtime: entry.mtime });
      else {
        await target.mkdir(dest, entry.mode);
        await target.chown(dest, uid, gid);
        await target.chmod(dest, entry.mode);
        await target.utimes(dest, entry.mtime, entry.mtime);
      }
      placed.set(pkgPath, dest);
      created.add(dest);
      continue;
    }

    const isConffile = entry.type === "file" && conffiles.has(pkgPath);
    if (isConffile) {
      dest = `${dest}.dpkg-new`;
      result.newConffiles.push(dest);
    }
    const current = isConffile && !fresh ? await target.lstat(dest) : existing;
    if (current?.type === "dir") {
      throw new DebConflictError(`${deb.package}: ${pkgPath} would replace a directory in the guest`, at);
    }
    // dpkg replaces what is there; a symlink in the way is replaced, never followed.
    if (current && (entry.type !== "file" || current.type !== "file")) await target.unlink(dest);

    let fastFile = false;
    switch (entry.type) {
      case "file": {
        const rel = pkgPath.slice(1);
        const content = hashing(data, (md5, size) => {
          result.md5.set(rel, md5);
          result.files++;
          result.bytes += size;
        });
        if (target.writeFileAttrs) {
          await target.writeFileAttrs(dest, content, {
            perms: entry.mode,
            uid,
            gid,
            mtime: entry.mtime,
            size: entry.size,
          });
          fastFile = true;
        } else await target.writeFile(dest, content, entry.mode, entry.size);
        const want = expected?.get(rel);
        const got = result.md5.get(rel);
        if (want && got !== want) {
          throw new ChecksumError(
            `${deb.package}: ${pkgPath}: MD5 ${got} does not match md5sums ${want}`,
            at,
          );
        }
        break;
      }
      case "hardlink": {
        const from = placed.get(debPath(entry.linkname, at));
        if (!from)
          throw new DebConflictError(
            `${deb.package}: hard link ${pkgPath} to ${entry.linkname}, which the package has not shipped before it`,
            at,
          );
        await target.link(from, dest);
        placed.set(pkgPath, dest);
        const sum = result.md5.get(debPath(entry.linkname, at).slice(1));
        if (sum) result.md5.set(pkgPath.slice(1), sum); // dpkg's generated md5sums list hard links too
        continue; // a hard link shares the inode's owner, mode and times
      }
      case "symlink":
        await target.symlink(entry.linkname, dest);
        paths.forget();
        break;
      default:
        await target.mknod(dest, entry.type, entry.mode, entry.devMajor, entry.devMinor);
    }
    if (!fastFile) {
      await target.chown(dest, uid, gid);
      if (entry.type !== "symlink") await target.chmod(dest, entry.mode);
      await target.utimes(dest, entry.mtime, entry.mtime);
    }
    placed.set(pkgPath, dest);
  }
  return result;
}
