import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { formatDep } from "../src/dep.js";
import { RepoFormatError } from "../src/errors.js";
import { nvra } from "../src/package-meta.js";
import { type GuestFileReader, locateRpmdb, readRpmdb } from "../src/rpmdb.js";
import { readBdbHash, readRpmdbBdb } from "../src/rpmdb-bdb.js";
import type { InstalledPackage } from "../src/rpmdb-header.js";
import { openSqlite, readRpmdbSqlite, sqliteTableEmpty } from "../src/rpmdb-sqlite.js";
import { buildRpms, type SpecPkg } from "./repo-builder.js";

const PKGS: SpecPkg[] = [
  {
    name: "base-lib",
    version: "3.1",
    release: "2.el9",
    epoch: 1,
    arch: "x86_64",
    provides: ["libbase.so.3()(64bit)", "virt-base = 3"],
    requires: ["(glibc or musl)", "/bin/sh"],
    conflicts: ["old-base < 2"],
    obsoletes: ["base-compat"],
    recommends: ["base-doc"],
    files: ["/usr/lib64/libbase.so.3", "/usr/share/base/a", "/usr/share/base/b"],
    config: ["/etc/base.conf"],
  },
  // Many files make a header larger than a page (a BDB overflow chain).
  { name: "big", files: Array.from({ length: 400 }, (_, i) => `/usr/share/big/file-with-a-long-name-${i}`) },
  { name: "tiny" },
];

/** A guest reader over a host directory (the test's stand-in for an image). */
function hostGuest(root: string): GuestFileReader {
  return {
    readFile: async (p) => readFile(join(root, p)).catch(() => null),
    readdir: async (p) => readdir(join(root, p)).catch(() => null),
  };
}

async function rpmQa(root: string, backend?: string): Promise<string[]> {
  const args = [
    ...(backend ? ["--define", `_db_backend ${backend}`] : []),
    "--root",
    root,
    "--dbpath",
    "/var/lib/rpm",
  ];
  const r = await runTool("rpm", [...args, "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n"]);
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout
    .toString()
    .split("\n")
    .filter((l) => l !== "")
    .sort();
}

async function rpmDeps(root: string, name: string, tag: string): Promise<string[]> {
  const r = await runTool("rpm", [
    "--root",
    root,
    "--dbpath",
    "/var/lib/rpm",
    "-q",
    "--qf",
    `[%{${tag}NEVRS}\\n]`,
    name,
  ]);
  return r.stdout
    .toString()
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("rpmlib("))
    .map((l) => l.replace(/ ([<>=]+) 0:/, " $1 "));
}

describeWithTools(["rpmbuild", "rpm", "db5.3_load"], "rpmdb readers", () => {
  let root = "";
  let sqlitePkgs: InstalledPackage[] = [];
  beforeAll(async () => {
    const dir = await tempDir("rpmdb-");
    const rpms = await buildRpms(dir, join(dir, "rpms"), PKGS);
    root = join(dir, "root");
    await mkdir(root);
    const base = ["--root", root, "--dbpath", "/var/lib/rpm"];
    expect((await runTool("rpm", [...base, "--initdb"])).exitCode).toBe(0);
    const r = await runTool("rpm", [...base, "-i", "--justdb", "--nodeps", "--ignorearch", ...rpms]);
    expect(r.exitCode, r.stderr).toBe(0);
    sqlitePkgs = await readRpmdbSqlite(join(root, "var/lib/rpm/rpmdb.sqlite"));
  });

  it("reads rpm 4.18's sqlite database as rpm -qa lists it", async () => {
    expect(sqlitePkgs.map(nvra).sort()).toEqual(await rpmQa(root));
    const lib = sqlitePkgs.find((p) => p.name === "base-lib")!;
    expect(lib.evr.epoch).toBe("1");
    expect(lib.files).toContain("/etc/base.conf");
    expect(lib.files).toHaveLength(4);
    for (const [tag, list] of [
      ["PROVIDE", lib.provides],
      ["REQUIRE", lib.requires],
      ["CONFLICT", lib.conflicts],
      ["OBSOLETE", lib.obsoletes],
      ["RECOMMEND", lib.recommends],
    ] as const) {
      expect(list.map(formatDep).sort(), tag).toEqual((await rpmDeps(root, "base-lib", tag)).sort());
    }
  });

  it("finds the database through the guest's directories", async () => {
    const g = hostGuest(root);
    const loc = await locateRpmdb(g);
    expect(loc).toEqual({ dbpath: "/var/lib/rpm", backend: "sqlite", file: "/var/lib/rpm/rpmdb.sqlite" });
    expect((await readRpmdb(g, loc!)).length).toBe(PKGS.length);
    expect(await locateRpmdb(hostGuest(join(root, "nonexistent")))).toBeNull();
  });

  it("reads a Berkeley DB hash Packages built by db5.3_load from the same header blobs, as rpm's bdb_ro does", async () => {
    const dir = await tempDir("rpmdb-bdb-");
    for (const pagesize of [1024, 4096]) {
      const bdbRoot = join(dir, `root-${pagesize}`);
      await mkdir(join(bdbRoot, "var/lib/rpm"), { recursive: true });
      const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
      const key = (n: number) => {
        const k = Buffer.alloc(4);
        k.writeUInt32LE(n);
        return hex(k);
      };
      // Key 0 is rpm's next-instance counter.
      const lines = ["VERSION=3", "format=bytevalue", "type=hash", `db_pagesize=${pagesize}`, "HEADER=END"];
      lines.push(` ${key(0)}`, ` ${key(sqlitePkgs.length + 1)}`);
      for (const p of sqlitePkgs) lines.push(` ${key(p.hnum)}`, ` ${hex(p.blob)}`);
      lines.push("DATA=END", "");
      const dump = join(dir, `dump-${pagesize}`);
      await writeFile(dump, lines.join("\n"));
      const file = join(bdbRoot, "var/lib/rpm/Packages");
      const l = await runTool("db5.3_load", ["-f", dump, file]);
      expect(l.exitCode, l.stderr).toBe(0);
      const ours = await readRpmdbBdb(file);
      expect(ours.map(nvra).sort()).toEqual(sqlitePkgs.map(nvra).sort());
      expect(ours.map((p) => p.files.length)).toEqual(sqlitePkgs.map((p) => p.files.length));
      // The oracle: rpm's read-only BDB backend lists the same packages.
      expect(await rpmQa(bdbRoot, "bdb_ro")).toEqual(ours.map(nvra).sort());
      const g = hostGuest(bdbRoot);
      expect((await locateRpmdb(g))?.backend).toBe("bdb");
    }
  });

  it("gives typed errors for damaged Berkeley DB files", async () => {
    const dir = await tempDir("rpmdb-bdb-bad-");
    const lines = ["VERSION=3", "format=bytevalue", "type=hash", "db_pagesize=1024", "HEADER=END"];
    for (const p of sqlitePkgs)
      lines.push(` ${Buffer.alloc(4, p.hnum).toString("hex")}`, ` ${Buffer.from(p.blob).toString("hex")}`);
    lines.push("DATA=END", "");
    await writeFile(join(dir, "dump"), lines.join("\n"));
    expect((await runTool("db5.3_load", ["-f", join(dir, "dump"), join(dir, "Packages")])).exitCode).toBe(0);
    const good = await readFile(join(dir, "Packages"));
    let typed = 0;
    // Flip bytes all over the file, one at a time: every outcome is a result or a typed error.
    for (let off = 0; off < good.length; off += 331) {
      const bad = new Uint8Array(good);
      bad[off] ^= 0x5a;
      try {
        readBdbHash(bad, "Packages");
      } catch (e) {
        expect(e, `offset ${off}`).toBeInstanceOf(Error);
        expect((e as { code?: unknown }).code, `offset ${off}: ${(e as Error).message}`).toMatch(/^E[A-Z]+$/);
        typed++;
      }
    }
    expect(typed).toBeGreaterThan(0);
    await expect(readRpmdbBdb("x", new Uint8Array(100))).rejects.toThrow(RepoFormatError);
  });

  it("answers an empty rpmdb without SQLite, as SQLite answers it", async () => {
    const empty = join(await tempDir("rpmdb-empty-"), "root");
    await mkdir(empty);
    expect((await runTool("rpm", ["--root", empty, "--dbpath", "/var/lib/rpm", "--initdb"])).exitCode).toBe(
      0,
    );
    expect(await rpmQa(empty)).toEqual([]);
    const bytes = await readFile(join(empty, "var/lib/rpm/rpmdb.sqlite"));
    expect(sqliteTableEmpty(bytes, "Packages")).toBe(true);
    expect(await readRpmdbSqlite("empty", bytes)).toEqual([]);
    // A database with packages is left to SQLite.
    expect(
      sqliteTableEmpty(await readFile(join(root, "var/lib/rpm/rpmdb.sqlite")), "Packages"),
    ).toBeUndefined();
    // Flipped bytes: whenever the shortcut says "empty", SQLite finds no row either (or refuses).
    let shortcut = 0;
    for (let off = 0; off < bytes.length; off += 331) {
      const bad = new Uint8Array(bytes);
      bad[off] ^= 0x5a;
      if (sqliteTableEmpty(bad, "Packages") !== true) continue;
      shortcut++;
      let rows: number | null = null;
      try {
        const db = await openSqlite(bad, "flipped");
        rows = db.exec("SELECT count(*) FROM Packages")[0]!.values[0]![0] as number;
        db.close();
      } catch {
        rows = null;
      }
      if (rows !== null) expect(rows, `offset ${off}`).toBe(0);
    }
    expect(shortcut).toBeGreaterThan(100);
  });

  it("gives typed errors for damaged sqlite databases", async () => {
    const file = join(root, "var/lib/rpm/rpmdb.sqlite");
    const good = await readFile(file);
    await expect(readRpmdbSqlite("junk", new Uint8Array(4096).fill(7))).rejects.toThrow(RepoFormatError);
    // A header blob damaged inside an intact database: the row's header is refused, typed.
    const db = await openSqlite(good, file);
    db.run("UPDATE Packages SET blob = ? WHERE hnum = (SELECT min(hnum) FROM Packages)", [
      new Uint8Array([0, 0, 0, 9, 0, 0, 0, 1, 1]),
    ]);
    const damaged = db.export();
    db.close();
    await expect(readRpmdbSqlite("damaged", damaged)).rejects.toThrow(RepoFormatError);
    // Flipped bytes across the file: a result or a typed error, never anything else.
    for (let off = 0; off < good.length; off += 1531) {
      const bad = new Uint8Array(good);
      bad[off] ^= 0xa5;
      try {
        await readRpmdbSqlite("flipped", bad);
      } catch (e) {
        expect((e as { code?: unknown }).code, `offset ${off}: ${(e as Error).message}`).toMatch(/^E[A-Z]+$/);
      }
    }
  });
});
