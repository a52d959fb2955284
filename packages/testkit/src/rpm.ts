import { runToolOk } from "./tools.js";

/** `rpm -qp --qf <qf> <pkg>`: query a package file (no database involved). */
export async function rpmQuery(pkg: string, qf: string): Promise<string> {
  return (await runToolOk("rpm", ["-qp", "--nosignature", "--nodigest", "--qf", qf, pkg])).toString("utf8");
}

export interface RpmFileEntry {
  path: string;
  size: number;
  mtime: number;
  /** Hex digest (algorithm per the package's FILEDIGESTALGO), "" for non-regular files. */
  digest: string;
  mode: number;
  user: string;
  group: string;
  /** RPMFILE_* flags (config 1, doc 2, ghost 64, ...). */
  flags: number;
  rdev: number;
  /** Symlink target, "" when none. */
  linkTo: string;
  /** Hard links share an inode number within the package. */
  inode: number;
}

const FIELDS = [
  "FILENAMES",
  "FILESIZES",
  "FILEMTIMES",
  "FILEDIGESTS",
  "FILEMODES:octal",
  "FILEUSERNAME",
  "FILEGROUPNAME",
  "FILEFLAGS",
  "FILERDEVS",
  "FILELINKTOS",
  "FILEINODES",
];

/**
 * The package's file list with the same columns as `rpm -qp --dump`, but fetched with a query
 * format whose separators (tab-free, newline-free fields) survive paths with spaces.
 */
export async function rpmDump(pkg: string): Promise<RpmFileEntry[]> {
  const SEP = "\u001f"; // unit separator
  const REC = "\u001e"; // record separator
  const qf = `[${FIELDS.map((f) => `%{${f}}`).join(SEP)}${REC}]`;
  const out = await rpmQuery(pkg, qf);
  const entries: RpmFileEntry[] = [];
  for (const rec of out.split(REC)) {
    if (rec === "" || rec === "\n") continue;
    const f = rec.split(SEP);
    if (f.length !== FIELDS.length) throw new Error(`rpm dump: unexpected record ${JSON.stringify(rec)}`);
    entries.push({
      path: f[0],
      size: Number(f[1]),
      mtime: Number(f[2]),
      digest: f[3],
      mode: Number.parseInt(f[4], 8),
      user: f[5],
      group: f[6],
      flags: Number(f[7]),
      rdev: Number(f[8]),
      linkTo: f[9],
      inode: Number(f[10]),
    });
  }
  return entries;
}

/** `rpm2cpio <pkg>`: the decompressed payload (a cpio archive). */
export async function rpm2cpio(pkg: string): Promise<Buffer> {
  return runToolOk("rpm2cpio", [pkg], { timeoutMs: 300_000 });
}
