import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, describe, expect, it } from "vitest";
import { formatDep } from "../src/dep.js";
import { RepoChecksumError, RepoFormatError, RepoLimitError } from "../src/errors.js";
import { readFilelists } from "../src/filelists.js";
import { nevra, type PackageMeta } from "../src/package-meta.js";
import { parsePrimaryXml, readPrimary } from "../src/primary.js";
import { repoSource } from "../src/repo-source.js";
import { parseRepomd, readRepomd } from "../src/repomd.js";
import { makeRepo, type SpecPkg } from "./repo-builder.js";

const PKGS: SpecPkg[] = [
  {
    name: "alpha",
    version: "1.2~rc1",
    release: "3.el9",
    epoch: 2,
    arch: "x86_64",
    requires: ["beta >= 1.0", "(gamma or delta)", "/usr/share/beta/data", "(zeta if eta else theta)"],
    provides: ["virt(alpha) = 7", "perl(Alpha::Beta) = 0.1"],
    conflicts: ["omega < 2"],
    obsoletes: ["old-alpha <= 1:0.9"],
    recommends: ["rec-pkg"],
    suggests: ["sug-pkg"],
    supplements: ["(beta and langpacks-de)"],
    enhances: ["beta"],
    files: ["/usr/bin/alpha", "/usr/share/alpha/readme"],
    config: ["/etc/alpha.conf"],
  },
  { name: "beta", version: "2.0^git5", files: ["/usr/share/beta/data"] },
];

async function collect(src: ReturnType<typeof repoSource>): Promise<PackageMeta[]> {
  const md = await readRepomd(src);
  const e = md.data.get("primary")!;
  const out: PackageMeta[] = [];
  await readPrimary(src, e.href, e.checksum, "test", (p) => out.push(p));
  return out;
}

describeWithTools(["rpmbuild", "createrepo_c", "rpm"], "metadata from createrepo_c", () => {
  let dir = "";
  let repo = "";
  beforeAll(async () => {
    dir = await tempDir("rpm-repo-md-");
    repo = await makeRepo(dir, "repo", PKGS);
  });

  for (const compress of ["gz", "xz", "bz2"] as const) {
    it(`parses primary (${compress}) as rpm reads the packages`, async () => {
      const r =
        compress === "gz"
          ? repo
          : await makeRepo(dir, `repo-${compress}`, PKGS, [`--general-compress-type=${compress}`]);
      const src = repoSource(compress === "xz" ? `file://${r}` : r);
      const pkgs = await collect(src);
      expect((await readRepomd(src)).data.get("primary")!.href.endsWith(`.${compress}`)).toBe(true);
      expect(pkgs.map(nevra).sort()).toEqual(["alpha-2:1.2~rc1-3.el9.x86_64", "beta-2.0^git5-1.noarch"]);
      for (const p of pkgs) {
        const file = join(r, p.location);
        // rpm's view of each dependency list, normalised through our formatter on both sides.
        for (const [tag, list] of [
          ["REQUIRE", p.requires],
          ["PROVIDE", p.provides],
          ["CONFLICT", p.conflicts],
          ["OBSOLETE", p.obsoletes],
          ["RECOMMEND", p.recommends],
          ["SUGGEST", p.suggests],
          ["SUPPLEMENT", p.supplements],
          ["ENHANCE", p.enhances],
        ] as const) {
          const q = await runTool("rpm", ["-qp", "--qf", `[%{${tag}NEVRS}\\n]`, file]);
          expect(q.exitCode, q.stderr).toBe(0);
          const rpmList = q.stdout
            .toString()
            .split("\n")
            .filter((l) => l !== "" && !l.startsWith("rpmlib("))
            .sort();
          // createrepo_c drops requirements a package satisfies itself; rpm lists them.
          const ours = list.map(formatDep).sort();
          for (const d of ours)
            expect(
              rpmList.map((l) => l.replace(/ = 0:/, " = ").replace(/ ([<>=]+) 0:/, " $1 ")),
              `${p.name} ${tag}`,
            ).toContain(d);
          if (tag !== "REQUIRE") expect(ours.length, `${p.name} ${tag}`).toBe(rpmList.length);
        }
      }
      const alpha = pkgs.find((p) => p.name === "alpha")!;
      expect(alpha.files).toEqual(expect.arrayContaining(["/usr/bin/alpha", "/etc/alpha.conf"]));
      expect(alpha.files).not.toContain("/usr/share/alpha/readme");
      expect(alpha.checksum?.type).toBe("sha256");
    });
  }

  it("reads a zstd primary (this createrepo_c cannot write one: recompressed with zstd)", async () => {
    const src = repoSource(repo);
    const e = (await readRepomd(src)).data.get("primary")!;
    const zst = join(dir, "primary.xml.zst");
    const r = await runTool("sh", ["-c", `gzip -dc '${join(repo, e.href)}' | zstd -q -o '${zst}'`]);
    expect(r.exitCode, r.stderr).toBe(0);
    const sum = await runTool("sha256sum", [zst]);
    const out: PackageMeta[] = [];
    await readPrimary(
      repoSource(dir),
      "primary.xml.zst",
      { type: "sha256", value: sum.stdout.toString().slice(0, 64) },
      "t",
      (p) => out.push(p),
    );
    expect(out.map(nevra).sort()).toEqual((await collect(src)).map(nevra).sort());
  });

  it("reads filelists for the wanted paths only", async () => {
    const src = repoSource(repo);
    const md = await readRepomd(src);
    const fl = md.data.get("filelists")!;
    const owners = await readFilelists(
      src,
      fl.href,
      fl.checksum,
      new Set(["/usr/share/alpha/readme", "/nope"]),
    );
    const pkgs = await collect(src);
    const alpha = pkgs.find((p) => p.name === "alpha")!;
    expect([...owners.entries()]).toEqual([[alpha.checksum!.value, ["/usr/share/alpha/readme"]]]);
  });

  it("refuses a primary whose checksum does not match repomd.xml, and a tampered repomd", async () => {
    const src = repoSource(repo);
    const md = await readRepomd(src);
    const e = md.data.get("primary")!;
    const bad = { type: e.checksum!.type, value: "0".repeat(64) };
    await expect(readPrimary(src, e.href, bad, "t", () => {})).rejects.toThrow(RepoChecksumError);
    // Flip one byte of the compressed primary in a copy of the repository.
    const copy = await tempDir("rpm-repo-bad-");
    await runTool("cp", ["-a", `${repo}/.`, copy]);
    const file = join(copy, e.href);
    const bytes = await readFile(file);
    bytes[bytes.length - 5] ^= 0xff;
    await writeFile(file, bytes);
    await expect(collect(repoSource(copy))).rejects.toBeInstanceOf(Error);
    await expect(collect(repoSource(copy))).rejects.toHaveProperty("code");
  });
});

function xmlStream(s: string | Uint8Array): AsyncIterable<Uint8Array> {
  const b = typeof s === "string" ? new TextEncoder().encode(s) : s;
  return (async function* () {
    for (let i = 0; i < b.length; i += 1000) yield b.subarray(i, i + 1000);
  })();
}

const ONE = `<package type="rpm"><name>a</name><arch>noarch</arch><version epoch="0" ver="1" rel="1"/><location href="a.rpm"/><format><rpm:requires><rpm:entry name="b" flags="GE" ver="2"/></rpm:requires></format></package>`;

describe("hostile metadata", () => {
  const parse = (s: string | Uint8Array, limits?: Parameters<typeof parsePrimaryXml>[4]) =>
    parsePrimaryXml(xmlStream(s), "t", "primary.xml", () => {}, limits);

  it("parses a minimal primary", async () => {
    const got: PackageMeta[] = [];
    const n = await parsePrimaryXml(
      xmlStream(`<metadata packages="999999999999">${ONE}</metadata>`),
      "t",
      "p",
      (p) => got.push(p),
    );
    expect(n).toBe(1);
    expect(got[0]!.requires.map(formatDep)).toEqual(["b >= 2"]);
  });

  it("gives typed errors for malformed input", async () => {
    const cases: (string | Uint8Array)[] = [
      "",
      "<metadata>",
      `<metadata>${ONE}`,
      `<metadata>${ONE.replace("</name>", "")}</metadata>`,
      "<other/>",
      `<metadata><package><name>a</name></package></metadata>`,
      `<metadata>${ONE.replace('flags="GE"', 'flags="XX"')}</metadata>`,
      `<metadata>${ONE.replace('name="b"', 'name="(b and"')}</metadata>`,
      `<metadata>${ONE.replace("<name>a</name>", "<name>a</name><package/>")}</metadata>`,
      new Uint8Array([0x3c, 0x6d, 0xff, 0xfe, 0x3e]),
      "<!DOCTYPE x [<!ENTITY a 'aaaa'>]><metadata>&a;&a;</metadata>",
    ];
    for (const c of cases)
      await expect(parse(c), String(c).slice(0, 80)).rejects.toBeInstanceOf(RepoFormatError);
  });

  it("bounds counts, nesting and text", async () => {
    await expect(
      parse(`<metadata>${ONE.repeat(5)}</metadata>`, { maxPackages: 3, maxEntries: 10, maxBytes: 1e9 }),
    ).rejects.toThrow(RepoLimitError);
    const manyDeps = ONE.replace("<rpm:requires>", `<rpm:requires>${'<rpm:entry name="x"/>'.repeat(50)}`);
    await expect(
      parse(`<metadata>${manyDeps}</metadata>`, { maxPackages: 3, maxEntries: 10, maxBytes: 1e9 }),
    ).rejects.toThrow(RepoLimitError);
    await expect(parse(`<metadata>${"<x>".repeat(1000)}</metadata>`)).rejects.toThrow(RepoLimitError);
    await expect(
      parse(`<metadata><package><name>${"a".repeat(3 << 20)}</name></package></metadata>`),
    ).rejects.toThrow(RepoLimitError);
  });

  it("refuses repomd.xml that is malformed or points outside the repository", async () => {
    await expect(
      parseRepomd(new TextEncoder().encode("<repomd><data type='primary'></repomd>")),
    ).rejects.toThrow(RepoFormatError);
    await expect(parseRepomd(new TextEncoder().encode("<repomd/>"))).rejects.toThrow(RepoFormatError);
    const md = await parseRepomd(
      new TextEncoder().encode(
        `<repomd><data type="primary"><checksum type="sha256">${"ab".repeat(32)}</checksum><location href="../../etc/shadow"/></data></repomd>`,
      ),
    );
    expect(() => repoSource("/tmp").open(md.data.get("primary")!.href)).toThrow(RepoFormatError);
    expect(() => repoSource("/tmp").locate("/etc/shadow")).toThrow(RepoFormatError);
    expect(() => repoSource("http://x/").locate("http://evil/x")).toThrow(RepoFormatError);
  });
});
