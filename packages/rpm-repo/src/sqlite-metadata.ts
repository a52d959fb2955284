/**
 * repomd's `primary_db` and `filelists_db` (primary.sqlite / filelists.sqlite, .bz2/.gz/.xz/.zst):
 * the same facts as primary.xml and filelists.xml in createrepo_c's database layout (yum's schema,
 * dbversion 10), read with sql.js. Used when a repository has no XML primary.
 *
 *   packages(pkgKey INTEGER PRIMARY KEY, pkgId, name, arch, version, epoch, release, …,
 *            size_package, …, location_href, location_base, checksum_type)
 *   provides|requires|conflicts|obsoletes|suggests|enhances|recommends|supplements
 *           (name, flags "EQ"/"GE"/… or NULL, epoch, version, release, pkgKey[, pre])
 *   files(name, type "file"/"dir"/"ghost", pkgKey)          primary's subset of the file list
 *
 * filelists.sqlite:
 *   packages(pkgKey INTEGER PRIMARY KEY, pkgId)
 *   filelist(pkgKey, dirname, filenames, filetypes)   one row per directory of a package: the
 *            base names joined by "/", their types one letter each (f, d, g)
 *
 * Packages come out in pkgKey order with every column checked for its type: a hostile database
 * gets RepoFormatError, not a TypeError.
 */
import type { SqlValue } from "sql.js";
import { type Dep, depFromParts, xmlFlags } from "./dep.js";
import { RepoFormatError, RepoLimitError } from "./errors.js";
import type { FileOwners } from "./filelists.js";
import { DEP_LISTS, emptyPackage, type PackageMeta } from "./package-meta.js";
import { DEFAULT_METADATA_LIMITS, type MetadataLimits, openMetadata } from "./primary.js";
import { type Checksum, type RepoSource, readAll } from "./repo-source.js";
import { eachRow, openSqlite } from "./rpmdb-sqlite.js";

const DEP_TABLES = DEP_LISTS;

/** Parse a decompressed primary.sqlite; `onPackage` sees each package once all its rows are read. */
export async function parsePrimarySqlite(
  bytes: Uint8Array,
  repo: string,
  where: string,
  onPackage: (p: PackageMeta) => void,
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
): Promise<number> {
  const db = await openSqlite(bytes, where);
  try {
    const byKey = new Map<number, PackageMeta>();
    const entries = new Map<number, number>();
    const str = (v: SqlValue, what: string, key: unknown): string => {
      if (typeof v === "string") return v;
      if (typeof v === "number") return String(v);
      throw new RepoFormatError(`package ${String(key)}: ${what} is ${v === null ? "NULL" : "not text"}`, {
        file: where,
      });
    };
    const opt = (v: SqlValue): string | undefined =>
      v === null ? undefined : typeof v === "string" ? v : typeof v === "number" ? String(v) : undefined;
    eachRow(
      db,
      "SELECT pkgKey, pkgId, name, arch, epoch, version, release, location_href, checksum_type, size_package FROM packages ORDER BY pkgKey",
      where,
      ([key, pkgId, name, arch, epoch, version, release, href, ctype, size]) => {
        if (typeof key !== "number")
          throw new RepoFormatError("packages row without an integer pkgKey", { file: where });
        if (byKey.size >= limits.maxPackages)
          throw new RepoLimitError(`more than ${limits.maxPackages} packages`, { file: where });
        const p = emptyPackage(repo);
        p.name = str(name, "name", key);
        p.arch = str(arch, "arch", key);
        p.evr = {
          epoch: opt(epoch) ?? "",
          version: str(version, "version", key),
          release: opt(release) ?? "",
        };
        p.location = str(href, "location_href", key);
        const id = opt(pkgId);
        const type = opt(ctype);
        if (id !== undefined && type !== undefined) p.checksum = { type, value: id.toLowerCase() };
        p.size = typeof size === "number" && Number.isSafeInteger(size) && size >= 0 ? size : 0;
        if (p.name === "" || p.arch === "" || p.evr.version === "")
          throw new RepoFormatError(`package ${key}: missing name, arch or version`, { file: where });
        if (p.location === "")
          throw new RepoFormatError(`package ${key} (${p.name}): missing location`, { file: where });
        byKey.set(key, p);
      },
    );
    const count = (key: number, p: PackageMeta) => {
      const n = (entries.get(key) ?? 0) + 1;
      if (n > limits.maxEntries)
        throw new RepoLimitError(`package ${key} (${p.name}): more than ${limits.maxEntries} entries`, {
          file: where,
        });
      entries.set(key, n);
    };
    for (const table of DEP_TABLES) {
      eachRow(
        db,
        `SELECT pkgKey, name, flags, epoch, version, release FROM ${table} ORDER BY rowid`,
        where,
        ([key, name, flags, epoch, version, release]) => {
          const p = typeof key === "number" ? byKey.get(key) : undefined;
          if (p === undefined)
            throw new RepoFormatError(`${table} row for unknown package ${String(key)}`, { file: where });
          count(key as number, p);
          const n = str(name, `a ${table} name`, key);
          if (n === "")
            throw new RepoFormatError(`package ${String(key)}: empty ${table} name`, { file: where });
          // As in primary.xml: rpmlib() requirements are rpm's own, not the solver's.
          if (n.startsWith("rpmlib(")) return;
          const ver = opt(version);
          const evr =
            ver === undefined ? null : { epoch: opt(epoch) ?? "", version: ver, release: opt(release) ?? "" };
          const d: Dep = depFromParts(n, xmlFlags(opt(flags), where), evr, where);
          p[table].push(d);
        },
      );
    }
    eachRow(db, "SELECT pkgKey, name FROM files ORDER BY rowid", where, ([key, name]) => {
      const p = typeof key === "number" ? byKey.get(key) : undefined;
      if (p === undefined)
        throw new RepoFormatError(`files row for unknown package ${String(key)}`, { file: where });
      count(key as number, p);
      p.files.push(str(name, "a file name", key));
    });
    for (const p of byKey.values()) onPackage(p);
    return byKey.size;
  } finally {
    db.close();
  }
}

/** Read a repository's primary_db (checksum verified against repomd.xml, then decompressed whole). */
export async function readPrimarySqlite(
  src: RepoSource,
  href: string,
  checksum: Checksum | null,
  repo: string,
  onPackage: (p: PackageMeta) => void,
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
): Promise<number> {
  const { where, data } = openMetadata(src, href, checksum, limits);
  // sqlite needs the whole file; the decompressed size is bounded like the compressed one.
  const bytes = await readAll(data, limits.maxBytes, where);
  return parsePrimarySqlite(bytes, repo, where, onPackage, limits);
}

/** From a decompressed filelists.sqlite: pkgid → the wanted paths that package holds. */
export async function parseFilelistsSqlite(
  bytes: Uint8Array,
  wanted: ReadonlySet<string>,
  where: string,
): Promise<FileOwners> {
  const byDir = new Map<string, Set<string>>();
  for (const path of wanted) {
    const slash = path.lastIndexOf("/");
    if (slash <= 0) continue;
    const dir = path.slice(0, slash);
    const names = byDir.get(dir) ?? new Set<string>();
    byDir.set(dir, names);
    names.add(path.slice(slash + 1));
  }
  const owners: FileOwners = new Map();
  const db = await openSqlite(bytes, where);
  try {
    for (const [dir, names] of byDir) {
      eachRow(
        db,
        "SELECT p.pkgId, f.filenames FROM filelist f JOIN packages p ON p.pkgKey = f.pkgKey WHERE f.dirname = ?",
        where,
        ([pkgId, filenames]) => {
          if (typeof pkgId !== "string" || typeof filenames !== "string")
            throw new RepoFormatError(`filelist row of ${dir} is not (text, text)`, { file: where });
          for (const base of filenames.split("/")) {
            if (!names.has(base)) continue;
            const id = pkgId.toLowerCase();
            const list = owners.get(id);
            const path = `${dir}/${base}`;
            if (list === undefined) owners.set(id, [path]);
            else if (!list.includes(path)) list.push(path);
          }
        },
        [dir],
      );
    }
  } finally {
    db.close();
  }
  return owners;
}

export async function readFilelistsSqlite(
  src: RepoSource,
  href: string,
  checksum: Checksum | null,
  wanted: ReadonlySet<string>,
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
): Promise<FileOwners> {
  const { where, data } = openMetadata(src, href, checksum, limits);
  const bytes = await readAll(data, limits.maxBytes, where);
  return parseFilelistsSqlite(bytes, wanted, where);
}
