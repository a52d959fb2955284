/**
 * The published bin is the esbuild bundle in dist/bundle (made by `npm run build`/`prepare`): it must
 * behave like the sources — version, a read command, an overlay edit that loads the lazily imported
 * RPM and xz code, and a diff (xxhash) — with qemu-img and e2fsck as the oracles of what it wrote.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  describeWithTools,
  e2fsck,
  FIXTURES_DIR,
  oraclesRequired,
  qemuImg,
  qemuImgCheck,
  tempDir,
} from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { baseImage } from "../src/main-job.js";

const PKG = fileURLToPath(new URL("../", import.meta.url));
const BUNDLE = join(PKG, "dist/bundle/imgpatch.js");
const ROOT_PART = 67584 * 512;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BUNDLE, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

if (!existsSync(BUNDLE) && !oraclesRequired()) {
  describe.skip("the bundled bin [skipped: dist/bundle/imgpatch.js not built; run npm run build]", () => {
    it("runs", () => {});
  });
} else {
  describeWithTools(["qemu-img", "e2fsck"], "the bundled bin (dist/bundle/imgpatch.js)", () => {
    it("exists after the build (npm ci runs it)", () => {
      expect(existsSync(BUNDLE), `${BUNDLE} missing: npm run build`).toBe(true);
    });

    it("prints the package version", async () => {
      const pkg = JSON.parse(await readFile(join(PKG, "package.json"), "utf8")) as { version: string };
      const r = await run(["--version"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe(pkg.version);
    });

    it("edits an overlay (RPM payload through xz), reads it back and diffs it", async () => {
      const dir = await tempDir("bundle-");
      // The base beside the overlay: reopening follows the backing link without --allow-backing.
      const base = join(dir, "base.qcow2");
      await copyFile(await baseImage(), base);
      const ov = join(dir, "ov.qcow2");
      const rpm = join(FIXTURES_DIR, "rpm/out/imgpatch-mini-xz.noarch.rpm");
      let r = await run([
        "customize",
        base,
        "--overlay",
        ov,
        "--write",
        "/opt/bundled:hello from the bundle",
        "--rpm",
        rpm,
        "--rpm-owner-fallback",
      ]);
      expect(r.code, r.stderr).toBe(0);
      r = await run(["cat", ov, "/opt/bundled"]);
      expect(r.stdout).toBe("hello from the bundle");
      r = await run(["diff", base, ov]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/added\s+\/opt\/bundled/);
      expect(r.stdout).toMatch(/added\s+\/usr\/share\/imgpatch-mini\/blob\.txt/);
      const check = await qemuImgCheck(ov);
      expect(check.clean, JSON.stringify(check.json)).toBe(true);
      const raw = join(dir, "ov.raw");
      await qemuImg(["convert", "-O", "raw", ov, raw]);
      const fsck = await e2fsck({ path: raw, offset: ROOT_PART });
      expect(fsck.clean, fsck.output).toBe(true);
    });
  });
}
