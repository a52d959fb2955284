/**
 * Register installed packages straight into an sqlite rpmdb, as `rpm -i` would leave it.
 *
 * The stored header is the package's main header (its immutable region untouched) with entries
 * appended after the region ("dribble" entries), in tag order, each value aligned for its type:
 *   the signature header's tags 256..999 and the legacy ones renamed (1000 SIZE → 257 SIGSIZE,
 *   1002 PGP → 259, 1004 MD5 → 261 SIGMD5, 1005 GPG → 262, 1006 PGP5 → 264, 1007 PAYLOADSIZE →
 *   1046 ARCHIVESIZE), when the main header lacks them; then 1008 INSTALLTIME, 1029 FILESTATES
 *   (CHAR, one 0 = "normal" per file), 1127 INSTALLCOLOR, 1128 INSTALLTID.
 * Blob layout: il (u32 BE) · dl (u32 BE) · il × {tag, type, offset, count} (BE) · dl bytes of data.
 *
 * Index tables (key, hnum, idx) are filled as rpm's addToIndex does: every entry of Name,
 * Basenames, Dirnames, Group, Providename, Conflictname, Obsoletename, Recommendname, Suggestname,
 * Supplementname, Enhancename; Requirename without install-only requirements (scriptlet and rpmlib
 * ones); the trigger name tables once per distinct name; Installtid (4 bytes, host order = little
 * endian here), Sigmd5 (16 bytes), Sha1header (hex text).
 */
import type { RpmHeader, RpmPackage } from "@imgpatch/rpm-inject";
import type { Database } from "sql.js";
import { type Dep, parseDep } from "./dep.js";
import { RepoFormatError, RepoUnsupportedError } from "./errors.js";
import { headerFromBlob, loadHeaderParser } from "./rpmdb-header.js";
import { openSqlite } from "./rpmdb-sqlite.js";

const T = {
  CHAR: 1,
  INT16: 3,
  INT32: 4,
  INT64: 5,
  STRING: 6,
  BIN: 7,
  STRING_ARRAY: 8,
  I18NSTRING: 9,
} as const;
const ALIGN: Record<number, number> = { [T.INT16]: 2, [T.INT32]: 4, [T.INT64]: 8 };

const SIG_RENAME: Record<number, number> = {
  1000: 257,
  1002: 259,
  1004: 261,
  1005: 262,
  1006: 264,
  1007: 1046,
};
/** IMA/fsverity signature tags are renamed to main-header tags we do not map: left out. */
const SIG_SKIP = new Set([274, 275, 276, 277]);

/** RPMSENSE bits of requirements rpm does not index (install-only: scriptlets, rpmlib, keyring). */
const INSTALL_ONLY = (1 << 5) | (1 << 7) | (1 << 9) | (1 << 10) | (1 << 24) | (1 << 26);

interface Dribble {
  tag: number;
  type: number;
  count: number;
  data: Uint8Array;
}

function rawValue(h: RpmHeader, tag: number): { type: number; count: number; data: Uint8Array } | null {
  const e = h.entries.get(tag);
  if (e === undefined) return null;
  const storeStart = 16 + h.indexCount * 16;
  return {
    type: e.type,
    count: e.count,
    data: h.bytes.subarray(storeStart + e.offset, storeStart + e.offset + e.length),
  };
}

function int32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0);
  return b;
}

export interface InstallStamp {
  /** Seconds since the epoch (INSTALLTIME). */
  time: number;
  /** Transaction id (INSTALLTID); rpm uses the transaction's start time. */
  tid: number;
  /** INSTALLCOLOR: rpm's %_transaction_color (3 on x86_64 and other 64-bit multilib arches). */
  color: number;
}

/** The header blob rpm stores for an installed package. */
export function installedBlob(pkg: RpmPackage, stamp: InstallStamp): Uint8Array {
  const h = pkg.header;
  const first = [...h.entries.values()][0];
  if (h.entries.get(63) === undefined || first === undefined) {
    throw new RepoUnsupportedError(
      "package header without an immutable region (v3 package): register at first boot",
      {
        file: h.file,
      },
    );
  }
  const dribble: Dribble[] = [];
  for (const e of pkg.signature.entries.values()) {
    if (SIG_SKIP.has(e.tag)) continue;
    const tag = SIG_RENAME[e.tag] ?? (e.tag >= 256 && e.tag < 1000 ? e.tag : null);
    if (tag === null || h.entries.has(tag)) continue;
    const v = rawValue(pkg.signature, e.tag)!;
    dribble.push({ tag, ...v });
  }
  const nfiles = (h.strings(1117) ?? h.strings(1027) ?? []).length;
  dribble.push({ tag: 1008, type: T.INT32, count: 1, data: int32(stamp.time) });
  if (nfiles > 0) dribble.push({ tag: 1029, type: T.CHAR, count: nfiles, data: new Uint8Array(nfiles) });
  dribble.push({ tag: 1127, type: T.INT32, count: 1, data: int32(stamp.color) });
  dribble.push({ tag: 1128, type: T.INT32, count: 1, data: int32(stamp.tid) });
  dribble.sort((a, b) => a.tag - b.tag);

  const il = h.indexCount;
  const dl = h.storeSize;
  const base = h.bytes.subarray(16);
  const index = base.subarray(0, il * 16);
  const store = base.subarray(il * 16, il * 16 + dl);
  const extra: number[] = [];
  const extraIndex: Uint8Array[] = [];
  let pos = dl;
  for (const d of dribble) {
    const a = ALIGN[d.type] ?? 1;
    while (pos % a !== 0) {
      extra.push(0);
      pos++;
    }
    const ent = new Uint8Array(16);
    const v = new DataView(ent.buffer);
    v.setInt32(0, d.tag);
    v.setUint32(4, d.type);
    v.setInt32(8, pos);
    v.setUint32(12, d.count);
    extraIndex.push(ent);
    for (const b of d.data) extra.push(b);
    pos += d.data.length;
  }
  const nil = il + dribble.length;
  const out = new Uint8Array(8 + nil * 16 + pos);
  const ov = new DataView(out.buffer);
  ov.setUint32(0, nil);
  ov.setUint32(4, pos);
  out.set(index, 8);
  extraIndex.forEach((e, i) => {
    out.set(e, 8 + (il + i) * 16);
  });
  out.set(store, 8 + nil * 16);
  out.set(Uint8Array.from(extra), 8 + nil * 16 + dl);
  return out;
}

/**
 * The names rpm indexes for a rich dependency besides its text: each simple name, prefixed with
 * "!" where it stands negated: the condition of if/unless (and, with an else branch, also as
 * it is, since the else branch applies when it is false).
 */
function richIndexNames(d: Dep, neg: boolean): string[] {
  if (d.kind === "simple") return [neg ? `!${d.name}` : d.name];
  const cond = d.op === "if" || d.op === "unless";
  return d.args.flatMap((a, i) => {
    if (!cond || i !== 1) return richIndexNames(a, neg);
    const flipped = richIndexNames(a, !neg);
    return d.args.length === 3 ? [...flipped, ...richIndexNames(a, neg)] : flipped;
  });
}

function indexRows(
  pkg: RpmPackage,
  blobHeader: RpmHeader,
  tid: number,
): [string, string | Uint8Array, number][] {
  const h = pkg.header;
  const rows: [string, string | Uint8Array, number][] = [];
  const all = (table: string, tag: number) =>
    (h.strings(tag) ?? []).forEach((k, i) => {
      rows.push([table, k, i]);
    });
  // Dependency tables hold a rich dependency's text and the names inside it (as rpm's index does).
  const deps = (table: string, tag: number, skip?: (i: number) => boolean) =>
    (h.strings(tag) ?? []).forEach((k, i) => {
      if (skip?.(i)) return;
      rows.push([table, k, i]);
      if (k.startsWith("("))
        for (const n of richIndexNames(parseDep(k, h.file), false)) rows.push([table, n, i]);
    });
  const unique = (table: string, tag: number) => {
    const seen = new Set<string>();
    (h.strings(tag) ?? []).forEach((k, i) => {
      if (!seen.has(k)) rows.push([table, k, i]);
      seen.add(k);
    });
  };
  rows.push(["Name", h.string(1000)!, 0]);
  all("Basenames", 1117);
  const group = h.entries.has(1016) ? (h.strings(1016) ?? [])[0] : undefined;
  if (group !== undefined) rows.push(["Group", group, 0]);
  const rflags = h.numbers(1049 - 1) ?? [];
  deps("Requirename", 1049, (i) => ((rflags[i] ?? 0) & INSTALL_ONLY) !== 0);
  deps("Providename", 1047);
  deps("Conflictname", 1054);
  deps("Obsoletename", 1090);
  unique("Triggername", 1066);
  all("Dirnames", 1118);
  const t = new Uint8Array(4);
  new DataView(t.buffer).setUint32(0, tid >>> 0, true);
  rows.push(["Installtid", t, 0]);
  const md5 = blobHeader.entries.has(261) ? blobHeader.binary(261) : undefined;
  if (md5 !== undefined) rows.push(["Sigmd5", new Uint8Array(md5), 0]);
  const sha1 = blobHeader.string(269);
  if (sha1 !== undefined) rows.push(["Sha1header", sha1, 0]);
  unique("Filetriggername", 5069);
  unique("Transfiletriggername", 5079);
  deps("Recommendname", 5046);
  deps("Suggestname", 5049);
  deps("Supplementname", 5052);
  deps("Enhancename", 5055);
  return rows;
}

/** Insert packages into an open rpmdb.sqlite; returns the header numbers given. */
export function registerIntoDb(
  db: Database,
  pkgs: RpmPackage[],
  stamp: InstallStamp,
  where: string,
): number[] {
  const hnums: number[] = [];
  db.exec("BEGIN");
  try {
    for (const pkg of pkgs) {
      const blob = installedBlob(pkg, stamp);
      db.run("INSERT INTO Packages (blob) VALUES (?)", [blob]);
      const hnum = db.exec("SELECT last_insert_rowid()")[0]!.values[0]![0] as number;
      const bh = headerFromBlob(blob, `${where} (new header ${hnum})`);
      for (const [table, key, idx] of indexRows(pkg, bh, stamp.tid)) {
        db.run(`INSERT INTO '${table}' (key, hnum, idx) VALUES (?, ?, ?)`, [key, hnum, idx]);
      }
      hnums.push(hnum);
    }
    db.exec("COMMIT");
  } catch (e) {
    db.exec("ROLLBACK");
    if (e instanceof Error && "code" in e) throw e;
    throw new RepoFormatError(
      `cannot register into the rpmdb: ${(e as Error).message}`,
      { file: where },
      { cause: e },
    );
  }
  return hnums;
}

/** A new rpmdb.sqlite image with `pkgs` registered (the input bytes are not changed). */
export async function registerSqlite(
  dbBytes: Uint8Array,
  pkgs: RpmPackage[],
  stamp: InstallStamp,
  where: string,
): Promise<Uint8Array> {
  await loadHeaderParser();
  const db = await openSqlite(dbBytes, where);
  try {
    registerIntoDb(db, pkgs, stamp, where);
    const out = db.export();
    // Back to the journal mode rpm left (WAL), which openSqlite switched off for sql.js.
    if (dbBytes[18] === 2 && dbBytes[19] === 2) {
      out[18] = 2;
      out[19] = 2;
    }
    return out;
  } finally {
    db.close();
  }
}

/** rpm's %_transaction_color for a guest architecture. */
export function transactionColor(basearch: string): number {
  return ["x86_64", "aarch64", "ppc64le", "ppc64", "s390x", "riscv64"].includes(basearch) ? 3 : 0;
}
