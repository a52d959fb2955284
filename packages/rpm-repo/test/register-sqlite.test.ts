/**
 * Registration into an sqlite rpmdb against rpm itself: the same packages installed by
 * `rpm -i --justdb` into one root and registered by us into another (same install time and
 * transaction id) give byte-identical header blobs and identical index tables; rpm lists ours with
 * -qa and, with the payloads unpacked by rpm-inject, verifies them with -V.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { HostDirTarget, injectRpms, type RpmPackage, readRpm } from "@imgpatch/rpm-inject";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { registerSqlite } from "../src/register-sqlite.js";
import { headerFromBlob, loadHeaderParser } from "../src/rpmdb-header.js";
import { openSqlite } from "../src/rpmdb-sqlite.js";
import { buildRpms, type SpecPkg } from "./repo-builder.js";

const PKGS: SpecPkg[] = [
  {
    name: "reg-main",
    version: "2.1",
    release: "3.el9",
    epoch: 1,
    arch: "x86_64",
    requires: ["reg-lib >= 1", "(reg-a or reg-b)", "(reg-w1 without reg-w2)"],
    provides: ["reg-virtual = 2"],
    conflicts: ["reg-old", "(reg-c1 unless reg-c2)"],
    obsoletes: ["reg-legacy < 1"],
    supplements: ["reg-lib"],
    suggests: ["(reg-s1 if reg-s2)"],
    enhances: ["reg-e"],
    recommends: ["reg-extra", "(reg-r1 if reg-r2 else reg-r3)"],
    files: ["/usr/bin/reg-main", "/usr/share/reg/one", "/usr/share/reg/two"],
    config: ["/etc/reg.conf"],
    scripts: { post: "true", preun: "true" },
  },
  { name: "reg-lib", files: ["/usr/lib/reg/lib.so"] },
];

const TABLES = [
  "Name",
  "Basenames",
  "Group",
  "Requirename",
  "Providename",
  "Conflictname",
  "Obsoletename",
  "Triggername",
  "Dirnames",
  "Installtid",
  "Sigmd5",
  "Sha1header",
  "Filetriggername",
  "Transfiletriggername",
  "Recommendname",
  "Suggestname",
  "Supplementname",
  "Enhancename",
];

async function dump(file: string): Promise<{ blobs: Uint8Array[]; tables: Record<string, string[]> }> {
  const db = await openSqlite(await readFile(file), file);
  const blobs = (db.exec("SELECT blob FROM Packages ORDER BY hnum")[0]?.values ?? []).map(
    (r) => r[0] as Uint8Array,
  );
  const tables: Record<string, string[]> = {};
  for (const t of TABLES) {
    tables[t] = (db.exec(`SELECT key, hnum, idx FROM '${t}'`)[0]?.values ?? [])
      .map((r) =>
        r.map((x) => (x instanceof Uint8Array ? Buffer.from(x).toString("hex") : String(x))).join("|"),
      )
      .sort();
  }
  db.close();
  return { blobs, tables };
}

describeWithTools(["rpmbuild", "rpm"], "register-sqlite against rpm -i --justdb", () => {
  let dir = "";
  let rpms: string[] = [];
  let pkgs: RpmPackage[] = [];
  beforeAll(async () => {
    dir = await tempDir("register-sqlite-");
    await loadHeaderParser();
    rpms = (await buildRpms(dir, join(dir, "rpms"), PKGS)).sort();
    pkgs = await Promise.all(rpms.map((f) => readRpm(f)));
  });

  it("writes the header blobs and index rows rpm writes", async () => {
    const a = join(dir, "a");
    const b = join(dir, "b");
    for (const r of [a, b]) {
      await mkdir(r);
      expect((await runTool("rpm", ["--root", r, "--dbpath", "/var/lib/rpm", "--initdb"])).exitCode).toBe(0);
    }
    const ins = await runTool("rpm", [
      "--root",
      a,
      "--dbpath",
      "/var/lib/rpm",
      "-i",
      "--justdb",
      "--nodeps",
      "--noscripts",
      ...rpms,
    ]);
    expect(ins.exitCode, ins.stderr).toBe(0);
    const theirs = await dump(join(a, "var/lib/rpm/rpmdb.sqlite"));
    const h0 = headerFromBlob(theirs.blobs[0]!, "a");
    const stamp = { time: h0.number(1008)!, tid: h0.number(1128)!, color: h0.number(1127)! };
    // rpm orders the transaction (requirements first); register in the order it stored them.
    const names = theirs.blobs.map((x) => headerFromBlob(x, "a").string(1000));
    const ordered = names.map((n) => pkgs.find((p) => p.header.string(1000) === n)!);
    const file = join(b, "var/lib/rpm/rpmdb.sqlite");
    // rpm stamps each package's install time when it installs it, so a transaction that crosses
    // a second boundary holds two times: register each package with the time rpm gave it.
    let bytes: Uint8Array = await readFile(file);
    for (let i = 0; i < ordered.length; i++) {
      const time = headerFromBlob(theirs.blobs[i]!, "a").number(1008)!;
      bytes = await registerSqlite(bytes, [ordered[i]!], { ...stamp, time }, file);
    }
    await writeFile(file, bytes);
    const ours = await dump(file);
    expect(ours.blobs.length).toBe(theirs.blobs.length);
    for (let i = 0; i < ours.blobs.length; i++) {
      expect(Buffer.from(ours.blobs[i]!).equals(Buffer.from(theirs.blobs[i]!)), `blob ${i}`).toBe(true);
    }
    expect(ours.tables).toEqual(theirs.tables);
    const qa = await runTool("rpm", ["--root", b, "--dbpath", "/var/lib/rpm", "-qa", "--qf", "%{NEVRA}\\n"]);
    expect(qa.stdout.toString().split("\n").filter(Boolean).sort()).toEqual([
      "reg-lib-1.0-1.noarch",
      "reg-main-1:2.1-3.el9.x86_64",
    ]);
    expect(
      (await runTool("rpm", ["--root", b, "--dbpath", "/var/lib/rpm", "-q", "--whatprovides", "reg-virtual"]))
        .exitCode,
    ).toBe(0);
  });

  it("rpm -V verifies packages unpacked by rpm-inject and registered by us", async () => {
    const root = join(dir, "v");
    await mkdir(join(root, "etc"), { recursive: true });
    await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    await writeFile(join(root, "etc/group"), "root:x:0:\n");
    expect((await runTool("rpm", ["--root", root, "--dbpath", "/var/lib/rpm", "--initdb"])).exitCode).toBe(0);
    const fresh = await Promise.all(rpms.map((f) => readRpm(f)));
    await injectRpms(fresh, new HostDirTarget(root), { signature: "ignore" });
    const file = join(root, "var/lib/rpm/rpmdb.sqlite");
    await writeFile(
      file,
      await registerSqlite(
        await readFile(file),
        fresh,
        { time: 1_700_000_000, tid: 1_700_000_000, color: 3 },
        file,
      ),
    );
    const v = await runTool("rpm", ["--root", root, "--dbpath", "/var/lib/rpm", "-Va", "--nodeps"]);
    expect(v.exitCode, `${v.stdout}${v.stderr}`).toBe(0);
    expect(v.stdout.toString()).toBe("");
    // And -V does notice a change, so the check above can fail.
    await writeFile(join(root, "usr/share/reg/one"), "changed\n");
    const bad = await runTool("rpm", ["--root", root, "--dbpath", "/var/lib/rpm", "-V", "reg-main"]);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stdout.toString()).toMatch(/5.*\/usr\/share\/reg\/one/);
  });
});
