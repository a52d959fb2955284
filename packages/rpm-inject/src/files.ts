/**
 * The file list of a package, built from the header's parallel per-file arrays.
 */
import { RpmFormatError } from "./errors.js";
import { safeGuestPath } from "./guest-path.js";
import type { RpmHeader } from "./header.js";
import { DigestAlgo, FileFlag, Tag } from "./tags.js";

export type RpmFileType = "file" | "dir" | "symlink" | "chardev" | "blockdev" | "fifo" | "socket";

export interface RpmFileEntry {
  /** Position in the header's file arrays (the stripped cpio form refers to files by it). */
  index: number;
  /** Safe, normalized absolute guest path. */
  path: string;
  type: RpmFileType;
  /** Full st_mode (type bits included). */
  mode: number;
  /** Permission bits incl. setuid/setgid/sticky (mode & 0o7777). */
  perms: number;
  size: number;
  mtime: number;
  user: string;
  group: string;
  /** Symlink target ("" for other types). */
  linkTarget: string;
  flags: number;
  config: boolean;
  noreplace: boolean;
  ghost: boolean;
  doc: boolean;
  license: boolean;
  missingOk: boolean;
  /** Raw rdev as stored (16 bits: major << 8 | minor). */
  rdev: number;
  rdevMajor: number;
  rdevMinor: number;
  inode: number;
  device: number;
  /** Lower-case hex digest of the content ("" when none: dirs, links, empty in old packages). */
  digest: string;
  /** Capability text (cap_to_text form), "" when none. */
  caps: string;
  /** Indexes of every member of this file's hard-link set (incl. itself), or undefined when not linked. */
  hardlinks?: number[];
}

const S_IFMT = 0o170000;
const TYPES: Record<number, RpmFileType> = {
  [0o140000]: "socket",
  [0o120000]: "symlink",
  [0o100000]: "file",
  [0o060000]: "blockdev",
  [0o040000]: "dir",
  [0o020000]: "chardev",
  [0o010000]: "fifo",
};

export function fileTypeOfMode(mode: number): RpmFileType | undefined {
  return TYPES[mode & S_IFMT];
}

export interface FileDigestAlgo {
  id: number;
  name: string;
  node: string;
  hexLength: number;
}

export function fileDigestAlgo(header: RpmHeader): FileDigestAlgo {
  const id = header.number(Tag.FILEDIGESTALGO) ?? 1; // absent means MD5
  const algo = DigestAlgo[id];
  if (!algo) {
    throw new RpmFormatError(`unknown file digest algorithm ${id}`, {
      file: header.file,
      offset: header.fileOffsetOf(Tag.FILEDIGESTALGO),
    });
  }
  return { id, ...algo };
}

function fileNames(h: RpmHeader): string[] {
  const base = h.strings(Tag.BASENAMES);
  if (base) {
    const dirs = h.strings(Tag.DIRNAMES) ?? [];
    const idx = h.numbers(Tag.DIRINDEXES) ?? [];
    if (idx.length !== base.length) {
      throw new RpmFormatError(`DIRINDEXES has ${idx.length} entries for ${base.length} BASENAMES`, {
        file: h.file,
        offset: h.fileOffsetOf(Tag.DIRINDEXES),
      });
    }
    return base.map((b, i) => {
      const d = dirs[idx[i]];
      if (d === undefined) {
        throw new RpmFormatError(`DIRINDEXES[${i}] = ${idx[i]} but there are ${dirs.length} DIRNAMES`, {
          file: h.file,
          offset: h.fileOffsetOf(Tag.DIRINDEXES),
        });
      }
      return d + b;
    });
  }
  return h.strings(Tag.OLDFILENAMES) ?? [];
}

/** Builds and validates the package's file entries. */
export function readFileEntries(h: RpmHeader): RpmFileEntry[] {
  const names = fileNames(h);
  const n = names.length;
  if (n === 0) return [];
  const where = (tag: number) => ({ file: h.file, offset: h.fileOffsetOf(tag) });
  const arr = <T>(tag: number, values: T[] | undefined, required: boolean, fill: T): T[] => {
    if (values === undefined) {
      if (required) throw new RpmFormatError(`file list lacks tag ${tag}`, { file: h.file });
      return new Array<T>(n).fill(fill);
    }
    if (values.length !== n) {
      throw new RpmFormatError(`tag ${tag} has ${values.length} entries for ${n} files`, where(tag));
    }
    return values;
  };
  const sizes = arr(Tag.LONGFILESIZES, h.numbers(Tag.LONGFILESIZES) ?? h.numbers(Tag.FILESIZES), true, 0);
  const modes = arr(Tag.FILEMODES, h.numbers(Tag.FILEMODES), true, 0);
  const mtimes = arr(Tag.FILEMTIMES, h.numbers(Tag.FILEMTIMES), false, 0);
  const digests = arr(Tag.FILEDIGESTS, h.strings(Tag.FILEDIGESTS), false, "");
  const links = arr(Tag.FILELINKTOS, h.strings(Tag.FILELINKTOS), false, "");
  const flags = arr(Tag.FILEFLAGS, h.numbers(Tag.FILEFLAGS), false, 0);
  const rdevs = arr(Tag.FILERDEVS, h.numbers(Tag.FILERDEVS), false, 0);
  const inodes = arr(Tag.FILEINODES, h.numbers(Tag.FILEINODES), false, 0);
  const devices = arr(Tag.FILEDEVICES, h.numbers(Tag.FILEDEVICES), false, 0);
  const caps = arr(Tag.FILECAPS, h.strings(Tag.FILECAPS), false, "");
  const uidFallback = h.numbers(Tag.FILEUIDS);
  const gidFallback = h.numbers(Tag.FILEGIDS);
  const users = arr(
    Tag.FILEUSERNAME,
    h.strings(Tag.FILEUSERNAME) ?? uidFallback?.map(numericOwner),
    false,
    "root",
  );
  const groups = arr(
    Tag.FILEGROUPNAME,
    h.strings(Tag.FILEGROUPNAME) ?? gidFallback?.map(numericOwner),
    false,
    "root",
  );
  const algo = fileDigestAlgo(h);

  const entries: RpmFileEntry[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const path = safeGuestPath(names[i], { file: h.file, offset: h.fileOffsetOf(Tag.BASENAMES) });
    if (seen.has(path)) throw new RpmFormatError(`file ${path} is listed twice`, { file: h.file });
    seen.add(path);
    const type = fileTypeOfMode(modes[i]);
    if (!type)
      throw new RpmFormatError(
        `file ${path} has unknown mode 0${modes[i].toString(8)}`,
        where(Tag.FILEMODES),
      );
    const digest = digests[i].toLowerCase();
    if (digest !== "" && (digest.length !== algo.hexLength || !/^[0-9a-f]+$/.test(digest))) {
      throw new RpmFormatError(
        `file ${path} has a malformed ${algo.name} digest "${digests[i]}"`,
        where(Tag.FILEDIGESTS),
      );
    }
    if (type === "symlink" && links[i] === "") {
      throw new RpmFormatError(`symlink ${path} has no target`, where(Tag.FILELINKTOS));
    }
    const f = flags[i];
    entries.push({
      index: i,
      path,
      type,
      mode: modes[i],
      perms: modes[i] & 0o7777,
      size: sizes[i],
      mtime: mtimes[i],
      user: users[i],
      group: groups[i],
      linkTarget: type === "symlink" ? links[i] : "",
      flags: f,
      config: (f & FileFlag.CONFIG) !== 0,
      noreplace: (f & FileFlag.NOREPLACE) !== 0,
      ghost: (f & FileFlag.GHOST) !== 0,
      doc: (f & FileFlag.DOC) !== 0,
      license: (f & FileFlag.LICENSE) !== 0,
      missingOk: (f & FileFlag.MISSINGOK) !== 0,
      rdev: rdevs[i],
      rdevMajor: (rdevs[i] >> 8) & 0xff,
      rdevMinor: rdevs[i] & 0xff,
      inode: inodes[i],
      device: devices[i],
      digest: type === "file" ? digest : "",
      caps: caps[i],
    });
  }
  linkHardlinks(entries);
  return entries;
}

function numericOwner(id: number): string {
  return id === 0 ? "root" : `#${id}`;
}

/** Regular files sharing (device, inode) form a hard-link set, as rpm computes it. */
function linkHardlinks(entries: RpmFileEntry[]): void {
  const sets = new Map<string, number[]>();
  for (const e of entries) {
    // Ghosts are not in the payload, so they cannot take part in sharing its content.
    if (e.type !== "file" || e.inode === 0 || e.ghost) continue;
    const key = `${e.device}:${e.inode}`;
    const set = sets.get(key);
    if (set) set.push(e.index);
    else sets.set(key, [e.index]);
  }
  for (const set of sets.values()) {
    if (set.length < 2) continue;
    for (const i of set) entries[i].hardlinks = set;
  }
}
