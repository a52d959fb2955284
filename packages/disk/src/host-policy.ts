/**
 * The backing-chain policy: which host files a name stored inside an image may open.
 *
 * An image is metadata pointing at other files (qcow2 backing files and external data files, vmdk
 * extents, vhd parents...). Those names are chosen by whoever made the image; following them
 * blindly lets an uploaded image copy `/etc/shadow` into the output. A name is followed only when
 *  - it is a plain path: `json:{…}` and protocol names (`nbd:`, `http://`, `file:`: a colon
 *    before the first slash, which is how qemu recognises them) are refused;
 *  - it resolves, after every symlink, inside one of the policy's roots (by default the directory
 *    of the image the user named; more with --allow-backing / allowBacking);
 *  - it is not under /proc, /sys or /dev, and it is a regular file (no device node, FIFO, socket),
 *    whatever the roots say;
 *  - the file descriptor finally opened is that same file: opened without following a final
 *    symlink and without blocking (a FIFO swapped in cannot hang us), then its fstat identity
 *    (device, inode) and, on Linux, /proc/self/fd's view of its path are compared with what was
 *    checked, so swapping a path component between check and open is caught.
 */
import { constants } from "node:fs";
import { type FileHandle, lstat, open, readlink, realpath } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { IoError, UnsafeImageError } from "./errors.js";

/** Never followed, whatever is allowed: kernel interfaces and device nodes. */
export const NEVER_FOLLOWED: readonly string[] = ["/proc", "/sys", "/dev"];

export interface HostLinkPolicy {
  /** Canonical directories (or single files) whose regular files may be opened, subdirectories included. */
  readonly roots: readonly string[];
}

/** A policy over these directories, each canonicalised (realpath; as given when it does not exist). */
export async function hostLinkPolicy(dirs: readonly string[]): Promise<HostLinkPolicy> {
  const roots: string[] = [];
  for (const d of dirs) {
    const abs = resolve(d);
    const real = await realpath(abs).catch(() => abs);
    if (!roots.includes(real)) roots.push(real);
  }
  return { roots };
}

/** A host file named inside an image. */
export interface HostLink {
  /** "backing file", "data file", "extent"... */
  kind: string;
  /** The name exactly as stored. */
  name: string;
  /** The image holding the name (for messages). */
  referrer: string;
  /** That image's path on the host (relative names resolve against its directory); null when it has none. */
  referrerPath: string | null;
  /** Byte offset of the name inside the referring image, when known. */
  offset?: number;
}

/** What checking a link found. */
export interface HostLinkVerdict {
  link: HostLink;
  /** The name resolved against the referrer's directory (null: cannot be resolved). */
  path: string | null;
  /** The canonical path (after symlinks) when it exists. */
  target: string | null;
  /** "ok" may be followed; "missing" does not exist; "refused" see `error`. */
  verdict: "ok" | "missing" | "refused";
  error?: UnsafeImageError;
}

/** qemu's path_has_protocol: a colon before the first slash names a protocol (`nbd:`, `json:`, `http:`). */
export function isProtocolName(name: string): boolean {
  const colon = name.indexOf(":");
  if (colon < 0) return false;
  const slash = name.indexOf("/");
  return slash < 0 || colon < slash;
}

/** A stored name resolved like qemu does: relative to the referring image's directory. */
export function resolveLinkPath(name: string, referrerPath: string | null): string | null {
  if (isAbsolute(name)) return name;
  if (referrerPath === null) return null;
  return resolve(dirname(referrerPath), name);
}

function inside(root: string, p: string): boolean {
  if (root === "/") return true;
  return p === root || p.startsWith(`${root}/`);
}

function kindOf(st: {
  isDirectory(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
}): string {
  if (st.isDirectory()) return "a directory";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

function refuse(
  link: HostLink,
  target: string | null,
  reason: UnsafeImageError["reason"],
  detail: string,
  trust?: string,
): UnsafeImageError {
  return new UnsafeImageError(
    link.kind,
    link.name,
    target,
    reason,
    detail,
    { file: link.referrer, offset: link.offset },
    trust,
  );
}

interface Checked {
  path: string;
  target: string;
  dev: number;
  ino: number;
}

/** Checks a link; throws UnsafeImageError when refused, IoError when it does not exist. */
async function check(link: HostLink, policy: HostLinkPolicy): Promise<Checked> {
  if (link.name.startsWith("json:") || isProtocolName(link.name)) {
    throw refuse(link, null, "protocol", "a protocol or json: name, not a host file; never followed");
  }
  const path = resolveLinkPath(link.name, link.referrerPath);
  if (path === null) {
    throw refuse(
      link,
      null,
      "unresolvable",
      "a relative name, but the image was not opened from a host path; not followed",
    );
  }
  let target: string;
  try {
    target = await realpath(path);
  } catch (err) {
    throw new IoError(
      `${link.kind} "${link.name}" (${path}) cannot be opened: ${(err as NodeJS.ErrnoException).code ?? err}`,
      { file: link.referrer, offset: link.offset },
      { cause: err },
    );
  }
  if (NEVER_FOLLOWED.some((r) => inside(r, target))) {
    throw refuse(link, target, "system", "under /proc, /sys or /dev; never followed");
  }
  const st = await lstat(target);
  if (!st.isFile()) throw refuse(link, target, "not-regular", `${kindOf(st)}; never followed`);
  if (!policy.roots.some((r) => inside(r, target))) {
    const dir = dirname(target);
    throw refuse(
      link,
      target,
      "outside",
      `outside the directories links may lead to (${policy.roots.join(", ") || "none"}); not followed — if you trust this image, allow it with --allow-backing ${dir} (or IMGPATCH_ALLOW_BACKING; library option allowBacking)`,
      dir,
    );
  }
  return { path, target, dev: st.dev, ino: st.ino };
}

/** Checks a link without opening it (for reports): never throws for refused or missing links. */
export async function inspectHostLink(link: HostLink, policy: HostLinkPolicy): Promise<HostLinkVerdict> {
  const path =
    link.name.startsWith("json:") || isProtocolName(link.name)
      ? null
      : resolveLinkPath(link.name, link.referrerPath);
  try {
    const c = await check(link, policy);
    return { link, path: c.path, target: c.target, verdict: "ok" };
  } catch (err) {
    if (err instanceof UnsafeImageError)
      return { link, path, target: err.target, verdict: "refused", error: err };
    return { link, path, target: null, verdict: "missing" };
  }
}

const OPEN_FLAGS =
  constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

/** A link opened under the policy: a read-only handle on the regular file that was checked. */
export interface OpenedHostLink {
  handle: FileHandle;
  /** The name resolved against the referrer (what qemu would open). */
  path: string;
  /** Its canonical path. */
  target: string;
  size: number;
}

/**
 * Checks a link against the policy and opens it read-only. Throws UnsafeImageError when the
 * policy refuses it (or it changed while being opened), IoError when it cannot be opened.
 */
export async function openHostLink(link: HostLink, policy: HostLinkPolicy): Promise<OpenedHostLink> {
  const c = await check(link, policy);
  let handle: FileHandle;
  try {
    handle = await open(c.target, OPEN_FLAGS);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ELOOP")
      throw refuse(link, c.target, "changed", "became a symlink while being opened; not followed");
    throw new IoError(
      `${link.kind} "${link.name}" (${c.target}) cannot be opened`,
      { file: link.referrer, offset: link.offset },
      { cause: err },
    );
  }
  try {
    const st = await handle.stat();
    const viaProc = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => null);
    if (!st.isFile() || st.dev !== c.dev || st.ino !== c.ino || (viaProc !== null && viaProc !== c.target)) {
      throw refuse(link, viaProc ?? c.target, "changed", "the file changed while being opened; not followed");
    }
    return { handle, path: c.path, target: c.target, size: st.size };
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
}
