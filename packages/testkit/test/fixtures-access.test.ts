import { spawn } from "node:child_process";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  FIXTURES_WORK,
  fixture,
  fixtureCopy,
  fixtureFs,
  fixtureInfo,
  fixtureManifest,
  fixtureNames,
  tempDir,
} from "../src/index.js";

describe("fixture access", () => {
  it("knows every fixture and rejects unknown names with the list", () => {
    expect(fixtureNames()).toContain("ext4-default.img");
    expect(() => fixtureInfo("nope.img")).toThrow(/known: .*ext4-default\.img/);
  });

  it("loads gzipped manifests", () => {
    const m = fixtureManifest(fixtureInfo("ext4-default.img").manifest!);
    expect(m.tree).toBe("full");
    expect(m.entries[0].path).toBe("/");
    expect(m.entries.filter((e) => e.path.startsWith("/bigdir/")).length).toBeGreaterThanOrEqual(5000);
  });

  it("decompresses sparsely into the shared cache, with the backing file of an overlay next to it", async () => {
    const p = await fixture("overlay.qcow2");
    expect(p.startsWith(FIXTURES_WORK)).toBe(true);
    const backing = join(p, "..", fixtureInfo("overlay.qcow2").backing!.recorded);
    expect((await stat(backing)).size).toBe(fixtureInfo("pattern-v3.qcow2").size);
    const disk = await fixture("disk-gpt.img");
    const st = await stat(disk);
    expect(st.size).toBe(fixtureInfo("disk-gpt.img").size);
    expect(st.blocks * 512).toBeLessThan(st.size); // mostly holes
  });

  it("fixtureFs gives partition offsets; fixtureCopy gives private copies", async () => {
    expect((await fixtureFs("disk-mbr.img", 5)).offset).toBe(
      fixtureInfo("disk-mbr.img").partitions!.find((p) => p.number === 5)!.offset,
    );
    expect((await fixtureFs("ext2.img")).offset).toBe(0);
    await expect(fixtureFs("disk-mbr.img")).rejects.toThrow(/partition/);
    await expect(fixtureFs("disk-mbr.img", 4)).rejects.toThrow(/no partition 4/);
    const dir = await tempDir();
    const copy = await fixtureCopy("overlay.qcow2", dir);
    expect(copy).toBe(join(dir, "overlay.qcow2"));
    const mine = await readFile(join(dir, "pattern-v3.qcow2"));
    // Buffer.equals: vitest's deep equality walks megabytes byte by byte.
    expect(mine.equals(await readFile(await fixture("pattern-v3.qcow2")))).toBe(true);
  });

  it("parallel processes materialising the same fixtures into an empty cache all get whole files", async () => {
    const dir = await tempDir();
    const src = fileURLToPath(new URL("../src/fixtures.ts", import.meta.url));
    const tsx = fileURLToPath(new URL("../../../node_modules/.bin/tsx", import.meta.url));
    // Each child copies into the same fresh directory at the same time (the race fixture() has).
    const script = join(dir, "race.mts");
    await writeFile(
      script,
      `import { fixtureCopy } from ${JSON.stringify(src)};\nawait fixtureCopy("ext4-1k.img", ${JSON.stringify(dir)});\n`,
    );
    const runs = Array.from(
      { length: 4 },
      () =>
        new Promise<number>((resolve) => {
          const c = spawn(tsx, [script], { stdio: ["ignore", "ignore", "inherit"] });
          c.on("close", (code) => resolve(code ?? -1));
        }),
    );
    expect(await Promise.all(runs)).toEqual([0, 0, 0, 0]);
    const data = await readFile(join(dir, "ext4-1k.img"));
    const { createHash } = await import("node:crypto");
    expect(createHash("sha256").update(data).digest("hex")).toBe(fixtureInfo("ext4-1k.img").sha256);
  });
});
