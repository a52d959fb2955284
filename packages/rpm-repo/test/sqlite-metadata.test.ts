/**
 * primary_db / filelists_db (createrepo_c --database) against primary.xml / filelists.xml of the
 * same createrepo_c run: the same packages field by field and the same solver results, on the
 * solver-oracle cases (whose XML results test against dnf itself). Hostile databases → typed errors.
 */
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { formatDep } from "../src/dep.js";
import { RepoChecksumError, RepoFormatError, UnsolvableError } from "../src/errors.js";
import { DEP_LISTS, nevra, type PackageMeta } from "../src/package-meta.js";
import { buildPool, loadRepo } from "../src/repo-load.js";
import { solveInstall } from "../src/solver.js";
import { parsePrimarySqlite } from "../src/sqlite-metadata.js";
import { buildRpms } from "./repo-builder.js";
import { CASES } from "./solver-cases.js";

/** A copy of the repository's metadata whose repomd.xml lists only the given kinds of data. */
async function view(repo: string, to: string, keep: (type: string) => boolean): Promise<string> {
  await cp(join(repo, "repodata"), join(to, "repodata"), { recursive: true });
  const md = await readFile(join(repo, "repodata/repomd.xml"), "utf8");
  const kept = md.replace(/<data type="([^"]+)">[\s\S]*?<\/data>\s*/g, (all, type: string) =>
    keep(type) ? all : "",
  );
  await writeFile(join(to, "repodata/repomd.xml"), kept);
  return to;
}

function summary(p: PackageMeta): string {
  const deps = DEP_LISTS.map((f) => `${f}: ${p[f].map(formatDep).sort().join(", ")}`).join("; ");
  return `${nevra(p)} ${p.location} ${p.checksum?.type}:${p.checksum?.value} ${p.size} files: ${[...p.files].sort().join(" ")}; ${deps}`;
}

function solve(pkgs: Awaited<ReturnType<typeof buildPool>>["pool"], request: string[]): string {
  try {
    return solveInstall(pkgs, request)
      .install.map((t) => `${nevra(t.pkg)} ${t.reason}`)
      .sort()
      .join(", ");
  } catch (e) {
    if (e instanceof UnsolvableError) return `unsolvable: ${e.message}`;
    throw e;
  }
}

const PICKED = CASES.filter((c) => !c.installed && !c.repo2);

describeWithTools(["rpmbuild", "createrepo_c"], "primary_db and filelists_db", () => {
  let base = "";
  beforeAll(async () => {
    base = await tempDir("sqlite-metadata-");
  });

  for (const [i, c] of PICKED.entries()) {
    it(`same packages and transaction as from XML: ${c.name}`, async () => {
      const dir = join(base, `case-${i}`);
      const repo = join(dir, "repo");
      await mkdir(dir, { recursive: true });
      await buildRpms(dir, repo, c.repo);
      const r = await runTool("createrepo_c", ["--quiet", "--database", repo]);
      expect(r.exitCode, r.stderr).toBe(0);
      const xml = await view(repo, join(dir, "xml"), (t) => !t.endsWith("_db"));
      const db = await view(repo, join(dir, "db"), (t) => t.endsWith("_db"));
      expect(await readFile(join(db, "repodata/repomd.xml"), "utf8")).not.toMatch(/primary\.xml/);

      const fromXml = await loadRepo({ id: "r1", baseurl: xml });
      const fromDb = await loadRepo({ id: "r1", baseurl: db });
      // rpm's own rpmlib() requirements are left out of both.
      expect(fromDb.packages.map(summary).sort()).toEqual(fromXml.packages.map(summary).sort());
      expect(fromDb.packages.length).toBe(c.repo.length);

      const px = await buildPool("x86_64", [fromXml], []);
      const pd = await buildPool("x86_64", [fromDb], []);
      expect(pd.filelistsLoaded).toEqual(px.filelistsLoaded);
      expect(solve(pd.pool, c.request)).toBe(solve(px.pool, c.request));
    });
  }

  it("refuses damaged or tampered databases with typed errors", async () => {
    const repo = join(base, "case-0", "repo");
    const dbView = join(base, "case-0", "db");
    const md = await readFile(join(dbView, "repodata/repomd.xml"), "utf8");
    const href = /<data type="primary_db">[\s\S]*?<location href="([^"]+)"/.exec(md)![1]!;
    // Tampered bytes: the checksum from repomd.xml no longer matches.
    const bytes = await readFile(join(repo, href));
    bytes[bytes.length - 3] ^= 0x55;
    await writeFile(join(dbView, href), bytes);
    await expect(loadRepo({ id: "r1", baseurl: dbView })).rejects.toBeInstanceOf(RepoChecksumError);
    // Not a database, and a database without the expected tables or with NULL names.
    await expect(
      parsePrimarySqlite(new TextEncoder().encode("x".repeat(4096)), "r", "p.sqlite", () => {}),
    ).rejects.toBeInstanceOf(RepoFormatError);
    const empty = join(base, "empty.sqlite");
    expect((await runTool("sqlite3", [empty, "CREATE TABLE t(x);"])).exitCode).toBe(0);
    await expect(parsePrimarySqlite(await readFile(empty), "r", "p.sqlite", () => {})).rejects.toBeInstanceOf(
      RepoFormatError,
    );
    const bad = join(base, "bad.sqlite");
    const unz = await runTool("sh", ["-c", `bzcat '${join(repo, href)}' > '${bad}'`]);
    expect(unz.exitCode).toBe(0);
    expect(
      (await runTool("sqlite3", [bad, "UPDATE packages SET name = NULL WHERE pkgKey = 1;"])).exitCode,
    ).toBe(0);
    await expect(parsePrimarySqlite(await readFile(bad), "r", "p.sqlite", () => {})).rejects.toThrow(
      /name is NULL/,
    );
    expect(
      (
        await runTool("sqlite3", [
          bad,
          "UPDATE packages SET name = 'x'; INSERT INTO requires(name, pkgKey) VALUES ('y', 999);",
        ])
      ).exitCode,
    ).toBe(0);
    await expect(parsePrimarySqlite(await readFile(bad), "r", "p.sqlite", () => {})).rejects.toThrow(
      /unknown package 999/,
    );
  });
});
