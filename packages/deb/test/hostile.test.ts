/**
 * Hostile packages: every one fails with a typed error (an ImgpatchError subclass naming the file),
 * and nothing is written outside the guest root — a symlinked parent pointing at "/../../.." or an
 * absolute host path is resolved inside the guest.
 */
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ImgpatchError } from "@imgpatch/disk";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { HostDirTarget } from "../../rpm-inject/src/host-target.js";
import { DebFormatError, DebPathError, DebUnsupportedError, readDeb, unpackDebs } from "../src/index.js";
import { craftAr, craftDeb, craftTar } from "./craft.js";

async function guest(): Promise<{ base: string; root: string }> {
  const base = await tempDir("deb-hostile-");
  const root = join(base, "root");
  await mkdir(join(root, "var/lib/dpkg/info"), { recursive: true });
  await writeFile(join(root, "var/lib/dpkg/status"), "");
  return { base, root };
}

async function unpack(root: string, bytes: Uint8Array) {
  const deb = await readDeb(bytes, { name: "evil.deb" });
  try {
    return await unpackDebs(new HostDirTarget(root), [deb]);
  } finally {
    await deb.close();
  }
}

describe("hostile .debs", () => {
  it("a '..' component is refused", async () => {
    const { root } = await guest();
    const e = await unpack(root, craftDeb([{ name: "./../../escape", content: "x" }])).catch((x) => x);
    expect(e).toBeInstanceOf(DebPathError);
    expect(String(e.message)).toContain("evil.deb");
  });

  it("symlinked parents are resolved inside the guest", async () => {
    const { base, root } = await guest();
    const outside = join(base, "outside");
    await mkdir(outside);
    const report = await unpack(
      root,
      craftDeb([
        { name: "./usr/", type: "5", mode: 0o755 },
        { name: "./usr/up", type: "2", link: "../../../../.." },
        { name: "./usr/up/landed", content: "up" },
      ]),
    );
    expect(report.packages[0].files).toBe(1);
    expect(await readFile(join(root, "landed"), "utf8")).toBe("up");
    // An absolute host path means the guest's path of that name, which does not exist there.
    const abs = craftDeb([
      { name: "./usr/", type: "5", mode: 0o755 },
      { name: "./usr/abs", type: "2", link: outside },
      { name: "./usr/abs/landed", content: "abs" },
    ]);
    await expect(unpack(root, abs)).rejects.toBeInstanceOf(ImgpatchError);
    expect(await readdir(outside)).toEqual([]);
  });

  it("truncated, bad magic, bad headers, bad member order, unknown compression, bad tar checksum", async () => {
    const good = craftDeb([{ name: "./a", content: "a" }]);
    const cases: Record<string, Uint8Array> = {
      empty: new Uint8Array(0),
      truncated: good.subarray(0, good.length - 50),
      "bad magic": Buffer.concat([Buffer.from("!<arch>X"), good.subarray(8)]),
      "bad size field": Buffer.from(
        good
          .toString("latin1")
          .replace(
            "debian-binary   0           0     0     100644  4 ",
            "debian-binary   0           0     0     100644  x4",
          ),
        "latin1",
      ),
      "no debian-binary": craftAr([
        ["control.tar", craftTar([{ name: "./control", content: "Package: a\n" }])],
      ]),
      "format 3.0": craftAr([["debian-binary", Buffer.from("3.0\n")]]),
      lzma: craftAr([
        ["debian-binary", Buffer.from("2.0\n")],
        ["control.tar.lzma", Buffer.from("x")],
        ["data.tar", craftTar([])],
      ]),
      "no control file": craftAr([
        ["debian-binary", Buffer.from("2.0\n")],
        ["control.tar", craftTar([{ name: "./postinst", content: "x" }])],
        ["data.tar", craftTar([])],
      ]),
      "huge field": craftDeb(
        [],
        `Package: a\nVersion: 1\nArchitecture: all\nDescription: x\n${" y\n".repeat(600_000)}`,
      ),
    };
    const { root } = await guest();
    for (const [name, bytes] of Object.entries(cases)) {
      const e = await unpack(root, bytes).catch((x) => x);
      expect(e, name).toBeInstanceOf(ImgpatchError);
      expect(
        [DebFormatError, DebUnsupportedError].some((c) => e instanceof c) || e.code === "EFORMAT",
        name,
      ).toBe(true);
    }
    const badSum = Buffer.from(good);
    const dataAt = badSum.lastIndexOf(Buffer.from("./a"));
    badSum[dataAt + 150] ^= 1;
    await expect(unpack(root, badSum)).rejects.toBeInstanceOf(DebFormatError);
  });
});
