/**
 * Parsing oracles: every fixture's file list against `rpm -qp` (path, size, mtime, digest, mode, owner,
 * group, flags, rdev, link target, inode), package fields against --qf, scriptlets against
 * --scripts' tags, and the payload's entry list against `rpm2cpio | cpio -t`.
 */
import { readdirSync } from "node:fs";
import { describeWithTools, rpm2cpio, rpmDump, rpmQuery, runTool } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { iteratePayload, readRpm } from "../src/index.js";
import { fixtureRpm, RPM_FIXTURES } from "./helpers.js";

const fixtures = readdirSync(RPM_FIXTURES)
  .filter((f) => f.endsWith(".rpm"))
  .map((f) => f.replace(/\.noarch\.rpm$/, ""))
  .sort();

describeWithTools(["rpm", "rpm2cpio", "cpio"], "RPM parsing vs rpm -qp / rpm2cpio", () => {
  it("has the fixtures", () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(12);
  });

  for (const name of fixtures) {
    it(`${name}: file list matches rpm -qp`, async () => {
      const path = fixtureRpm(name);
      const expected = await rpmDump(path);
      const pkg = await readRpm(path);
      try {
        expect(pkg.files.length).toBe(expected.length);
        const ours = pkg.files.map((f) => ({
          path: f.path,
          size: f.size,
          mtime: f.mtime,
          digest: f.digest,
          mode: f.mode,
          user: f.user,
          group: f.group,
          flags: f.flags,
          rdev: f.rdev,
          linkTo: f.linkTarget,
          inode: f.inode,
        }));
        expect(ours).toEqual(expected.map((e) => ({ ...e, digest: e.digest })));

        const qf = await rpmQuery(
          path,
          "%{NAME}|%{EPOCH}|%{VERSION}|%{RELEASE}|%{ARCH}|%{PAYLOADCOMPRESSOR}|%{FILEDIGESTALGO}|[%{FILECAPS},]",
        );
        const [n, epoch, v, r, arch, comp, algo, caps] = qf.split("|");
        expect(pkg.info.name).toBe(n);
        expect(pkg.info.epoch === undefined ? "(none)" : String(pkg.info.epoch)).toBe(epoch);
        expect([pkg.info.version, pkg.info.release, pkg.info.arch]).toEqual([v, r, arch]);
        expect(pkg.header.string(1125) ?? "(none)").toBe(comp);
        expect(String(pkg.fileDigestAlgo.id)).toBe(algo === "(none)" ? "1" : algo); // absent means MD5
        if (caps === "") expect(pkg.files.every((f) => f.caps === "")).toBe(true);
        else expect(pkg.files.map((f) => `${f.caps},`).join("")).toBe(caps);

        const deps = await rpmQuery(path, "[%{REQUIRENEVRS}\n]");
        expect(pkg.requires).toEqual(deps.split("\n").filter(Boolean));
        const provs = await rpmQuery(path, "[%{PROVIDENEVRS}\n]");
        expect(pkg.provides).toEqual(provs.split("\n").filter(Boolean));
      } finally {
        await pkg.close();
      }
    });
  }

  it("scriptlets and interpreters match rpm --qf", async () => {
    const path = fixtureRpm("imgpatch-demo-xz");
    const pkg = await readRpm(path);
    try {
      for (const [phase, tag] of [
        ["pre", "PREIN"],
        ["post", "POSTIN"],
        ["preun", "PREUN"],
        ["postun", "POSTUN"],
        ["pretrans", "PRETRANS"],
        ["posttrans", "POSTTRANS"],
      ]) {
        const body = await rpmQuery(path, `%{${tag}}`);
        const prog = await rpmQuery(path, `%{${tag}PROG}`);
        const s = pkg.scriptlets.find((x) => x.phase === phase);
        expect(s?.body, phase).toBe(body);
        expect(s?.interpreter.join(" "), phase).toBe(prog);
      }
      const trig = await rpmQuery(path, "[%{TRIGGERTYPE} %{TRIGGERCONDS}\n]");
      expect(pkg.triggers.map((t) => `${t.kind.replace("trigger", "")} ${t.condition}`)).toEqual(
        trig.split("\n").filter(Boolean),
      );
    } finally {
      await pkg.close();
    }
  });

  for (const name of fixtures.filter((n) => !n.endsWith("-lzma"))) {
    it(`${name}: payload entries match rpm2cpio | cpio -t`, async () => {
      const path = fixtureRpm(name);
      const cpio = await rpm2cpio(path);
      const listing = await runTool("cpio", ["-t", "--quiet"], { input: cpio });
      expect(listing.exitCode, listing.stderr).toBe(0);
      const pkg = await readRpm(path);
      const ours: string[] = [];
      try {
        for await (const e of iteratePayload(pkg)) ours.push(`.${e.file.path}`);
      } finally {
        await pkg.close();
      }
      expect(ours).toEqual(listing.stdout.toString("utf8").split("\n").filter(Boolean));
    });
  }

  it("refuses the lzma payload with an error naming the compressor", async () => {
    const pkg = await readRpm(fixtureRpm("imgpatch-mini-lzma"));
    try {
      const it = iteratePayload(pkg)[Symbol.asyncIterator]();
      await expect(it.next()).rejects.toMatchObject({
        name: "RpmUnsupportedError",
        message: expect.stringMatching(/lzma/),
      });
    } finally {
      await pkg.close();
    }
  });
});
