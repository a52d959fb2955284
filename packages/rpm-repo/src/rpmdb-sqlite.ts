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
  await loadHeaderParser();
  const db = await openSqlite(bytes ?? (await readFile(file)), file);
  try {
    return readSqliteHeaders(db, file);
  } finally {
    db.close();
  }
}
