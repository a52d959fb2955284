/**
 * rpm's sqlite backend (`rpmdb.sqlite`, rpm ≥ 4.16: EL9+, Fedora ≥ 33), read with sql.js (SQLite
 * compiled to WebAssembly; nothing native). The table that matters:
 *
 *   Packages(hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)   one header per row
 *
 * The other tables (Name, Basenames, Providename, …: key, hnum, idx) are indexes rpm rebuilds from
 * the headers; register-sqlite.ts keeps them in step when it adds a package.
 */
import { readFile } from "node:fs/promises";
import type { Database, SqlJsStatic, SqlValue } from "sql.js";
import { RepoFormatError } from "./errors.js";
import { type InstalledPackage, installedFromBlob, loadHeaderParser } from "./rpmdb-header.js";

let sqlJs: Promise<SqlJsStatic> | null = null;

/** The sql.js module, loaded once per process. */
export function loadSqlJs(): Promise<SqlJsStatic> {
  // Loaded on first use: compiling the WebAssembly costs start-up time a pure resolve does not need.
  sqlJs ??= import("sql.js").then((m) => m.default());
  return sqlJs;
}

/**
 * Open a database image. A database left in WAL mode (rpm keeps it so) is switched to the rollback
 * journal in the in-memory copy: sql.js has no shared memory for WAL, and a clean rpm close has
 * already checkpointed the log into the main file.
 */
export async function openSqlite(bytes: Uint8Array, where: string): Promise<Database> {
  const SQL = await loadSqlJs();
  const copy = new Uint8Array(bytes);
  if (copy.length >= 100 && copy[18] === 2 && copy[19] === 2) {
    copy[18] = 1;
    copy[19] = 1;
  }
  try {
    const db = new SQL.Database(copy);
    db.exec("SELECT count(*) FROM sqlite_master");
    return db;
  } catch (e) {
    throw new RepoFormatError(
      `not an SQLite database: ${(e as Error).message}`,
      { file: where },
      { cause: e },
    );
  }
}

/**
 * Run a query row by row; sql.js's plain Errors (a damaged file, "database disk image is malformed";
 * a missing table) become typed errors naming the file.
 */
export function eachRow(
  db: Database,
  sql: string,
  where: string,
  fn: (row: SqlValue[]) => void,
  params: SqlValue[] = [],
): void {
  let stmt: ReturnType<Database["prepare"]>;
  try {
    stmt = db.prepare(sql, params);
  } catch (e) {
    throw new RepoFormatError(
      `unexpected database layout: ${(e as Error).message}`,
      { file: where },
      { cause: e },
    );
  }
  try {
    for (;;) {
      let more: boolean;
      try {
        more = stmt.step();
      } catch (e) {
        throw new RepoFormatError(`damaged database: ${(e as Error).message}`, { file: where }, { cause: e });
      }
      if (!more) break;
      fn(stmt.get());
    }
  } finally {
    stmt.free();
  }
}

export function readSqliteHeaders(db: Database, where: string): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  eachRow(db, "SELECT hnum, blob FROM Packages ORDER BY hnum", where, ([hnum, blob]) => {
    if (typeof hnum !== "number" || !(blob instanceof Uint8Array)) {
      throw new RepoFormatError(`Packages row ${String(hnum)} is not (integer, blob)`, { file: where });
    }
    out.push(installedFromBlob(hnum, blob, `${where} header ${hnum}`));
  });
  return out;
}

/** Every installed package of an `rpmdb.sqlite` file. */
export async function readRpmdbSqlite(file: string, bytes?: Uint8Array): Promise<InstalledPackage[]> {
  const data = bytes ?? (await readFile(file));
  // A fresh or emptied rpmdb (a guest built from scratch): no WebAssembly to start for nothing.
  if (sqliteTableEmpty(data, "Packages") === true) return [];
  await loadHeaderParser();
  const db = await openSqlite(data, file);
  try {
    return readSqliteHeaders(db, file);
  } finally {
    db.close();
  }
}

/** An SQLite varint at `off` (1–9 bytes, big-endian 7-bit groups): [value, next offset], or null. */
function varint(b: Uint8Array, off: number, end: number): [number, number] | null {
  let v = 0;
  for (let k = 0; k < 9; k++) {
    if (off + k >= end) return null;
    const c = b[off + k]!;
    if (k === 8) return [v * 256 + c, off + 9];
    v = v * 128 + (c & 0x7f);
    if (c < 0x80) return [v, off + k + 1];
  }
  return null;
}

/** Bytes of a record column with serial type `t` (SQLite file format §2.1). */
function serialSize(t: number): number {
  if (t >= 12) return Math.floor((t - 12) / 2);
  return [0, 1, 2, 3, 4, 6, 8, 8, 0, 0, -1, -1][t]!;
}

/**
 * Is table `name` empty? Read from the file format without SQLite: the schema (sqlite_master, a
 * table b-tree rooted at page 1) is walked for the table's root page, which must be a leaf with no
 * cells. Anything else — an interior root, a layout not understood, damage — is `undefined` and
 * the caller asks SQLite itself.
 *
 *   file header (100 bytes): 0 "SQLite format 3\0" | 16 page size (u16 BE, 1 = 65536) |
 *     20 reserved bytes per page (u8) | 56 text encoding (u32 BE, 1 = UTF-8)
 *   b-tree page header (at 100 on page 1, else at 0): 0 type (0x0D table leaf, 0x05 table
 *     interior) | 3 cell count (u16 BE) | 8 right-most child (u32 BE, interior only); cell
 *     pointers (u16 BE, from the page start) follow the 8-byte (leaf) or 12-byte (interior) header
 *   interior cell: left child page (u32 BE) | rowid (varint)
 *   leaf cell: payload size (varint) | rowid (varint) | payload (its local part first)
 *   record: header size (varint, itself included) | serial types (varints) | column bodies
 *   sqlite_master row: type, name, tbl_name, rootpage, sql
 */
export function sqliteTableEmpty(b: Uint8Array, name: string): boolean | undefined {
  if (b.length < 512 || new TextDecoder().decode(b.subarray(0, 16)) !== "SQLite format 3\0") return undefined;
  const ps = b[16]! * 256 + b[17]!;
  const pageSize = ps === 1 ? 65536 : ps;
  if (pageSize < 512 || (pageSize & (pageSize - 1)) !== 0 || b.length < pageSize) return undefined;
  if (((b[56]! << 24) | (b[57]! << 16) | (b[58]! << 8) | b[59]!) !== 1) return undefined;
  const usable = pageSize - b[20]!;
  const pages = Math.floor(b.length / pageSize);
  const want = new TextEncoder().encode(name);
  const u16 = (o: number) => b[o]! * 256 + b[o + 1]!;
  const u32 = (o: number) => b[o]! * 2 ** 24 + b[o + 1]! * 65536 + b[o + 2]! * 256 + b[o + 3]!;
  let visited = 0;
  /** The table's root page from the schema subtree at `page`; 0 when not in it; -1 when unreadable. */
  const find = (page: number, depth: number): number => {
    if (page < 1 || page > pages || depth > 8 || ++visited > 256) return -1;
    const base = (page - 1) * pageSize;
    const h = page === 1 ? 100 : base;
    const type = b[h];
    const cells = u16(h + 3);
    if (type === 0x05) {
      for (let c = 0; c <= cells; c++) {
        if (c < cells && h + 14 + 2 * c > base + usable) return -1;
        const child = c === cells ? u32(h + 8) : u32(base + u16(h + 12 + 2 * c));
        const r = find(child, depth + 1);
        if (r !== 0) return r;
      }
      return 0;
    }
    if (type !== 0x0d) return -1;
    const end0 = base + usable;
    for (let c = 0; c < cells; c++) {
      const ptr = h + 8 + 2 * c;
      if (ptr + 2 > end0) return -1;
      const cell = base + u16(ptr);
      if (cell < h + 8 || cell >= end0) return -1;
      const size = varint(b, cell, end0);
      const rowid = size && varint(b, size[1], end0);
      if (!size || !rowid) return -1;
      const start = rowid[1];
      // Only the cell's local part is read; a schema row's first four columns are in it.
      const end = Math.min(start + size[0], end0);
      const hs = varint(b, start, end);
      if (hs === null) return -1;
      const types: number[] = [];
      for (let off = hs[1]; off < start + hs[0] && types.length < 4; ) {
        const t = varint(b, off, end);
        if (t === null) return -1;
        types.push(t[0]);
        off = t[1];
      }
      if (types.length < 4) return -1;
      let body = start + hs[0];
      const col: Uint8Array[] = [];
      for (const t of types) {
        const n = serialSize(t);
        if (n < 0 || body + n > end) return -1;
        col.push(b.subarray(body, body + n));
        body += n;
      }
      if (new TextDecoder().decode(col[0]) !== "table") continue;
      if (col[1]!.length !== want.length || !col[1]!.every((x, i) => x === want[i])) continue;
      // rootpage: a big-endian integer column (serial types 1–6).
      if (types[3]! < 1 || types[3]! > 6) return -1;
      let root = 0;
      for (const x of col[3]!) root = root * 256 + x;
      return root >= 2 && root <= pages ? root : -1;
    }
    return 0;
  };
  const root = find(1, 0);
  if (root <= 0) return undefined;
  const page = (root - 1) * pageSize;
  return b[page] === 0x0d && b[page + 3] === 0 && b[page + 4] === 0 ? true : undefined;
}
