/**
 * Find and read the guest's rpmdb. rpm looks in `%_dbpath`: `/var/lib/rpm` on EL ≤ 8 and SUSE,
 * `/usr/lib/sysimage/rpm` on Fedora ≥ 36 / EL ≥ 10 (with /var/lib/rpm a symlink to it), or what a
 * macros file sets. The backend follows from the file found: `rpmdb.sqlite` (sqlite),
 * `Packages.db` (ndb), `Packages` (Berkeley DB hash).
 */
import { RepoFormatError, RepoUnsupportedError } from "./errors.js";
import { readRpmdbBdb } from "./rpmdb-bdb.js";
import type { InstalledPackage } from "./rpmdb-header.js";
import { readRpmdbSqlite } from "./rpmdb-sqlite.js";

export type RpmdbBackend = "sqlite" | "bdb" | "ndb";

/** Reads a guest file (symlinks resolved inside the guest); null when it does not exist. */
export interface GuestFileReader {
  readFile(path: string): Promise<Uint8Array | null>;
  /** Names in a guest directory, or null when it does not exist. */
  readdir(path: string): Promise<string[] | null>;
}

export interface RpmdbLocation {
  dbpath: string;
  backend: RpmdbBackend;
  /** The main database file inside the guest. */
  file: string;
}

const BACKEND_FILES: [string, RpmdbBackend][] = [
  ["rpmdb.sqlite", "sqlite"],
  ["Packages.db", "ndb"],
  ["Packages", "bdb"],
];

/** `%_dbpath` set by a macros file in the guest, if any (last definition wins, as rpm reads them). */
async function macroDbpath(g: GuestFileReader): Promise<string | null> {
  const files: string[] = [];
  for (const dir of ["/usr/lib/rpm/macros.d", "/etc/rpm"]) {
    const names = await g.readdir(dir);
    for (const n of (names ?? []).sort()) if (n.startsWith("macros")) files.push(`${dir}/${n}`);
  }
  let found: string | null = null;
  for (const f of files) {
    const bytes = await g.readFile(f);
    if (bytes === null || bytes.length > 1 << 20) continue;
    for (const line of new TextDecoder().decode(bytes).split("\n")) {
      const m = /^%_dbpath\s+(\S+)/.exec(line.trim());
      if (m && m[1]!.startsWith("/") && !m[1]!.includes("%")) found = m[1]!;
    }
  }
  return found;
}

/** Where the guest keeps its rpmdb, or null for a guest without one (not an RPM guest). */
export async function locateRpmdb(g: GuestFileReader): Promise<RpmdbLocation | null> {
  const candidates: string[] = [];
  const m = await macroDbpath(g);
  if (m !== null) candidates.push(m);
  candidates.push("/usr/lib/sysimage/rpm", "/var/lib/rpm");
  for (const dbpath of candidates) {
    const names = await g.readdir(dbpath);
    if (names === null) continue;
    for (const [file, backend] of BACKEND_FILES) {
      if (names.includes(file)) return { dbpath, backend, file: `${dbpath}/${file}` };
    }
  }
  return null;
}

/** Every installed package of the guest's rpmdb. */
export async function readRpmdb(g: GuestFileReader, loc: RpmdbLocation): Promise<InstalledPackage[]> {
  const bytes = await g.readFile(loc.file);
  if (bytes === null) throw new RepoFormatError("rpmdb vanished", { file: loc.file });
  switch (loc.backend) {
    case "sqlite": {
      const wal = await g.readFile(`${loc.file}-wal`);
      if (wal !== null && wal.length > 0) {
        throw new RepoUnsupportedError(
          "rpmdb.sqlite has an unmerged write-ahead log (rpm did not close it cleanly); run `rpm --rebuilddb` in the guest",
          { file: `${loc.file}-wal` },
        );
      }
      return readRpmdbSqlite(loc.file, bytes);
    }
    case "bdb":
      return readRpmdbBdb(loc.file, bytes);
    case "ndb":
      throw new RepoUnsupportedError("the ndb rpmdb backend (SUSE) is not read yet", { file: loc.file });
  }
}
