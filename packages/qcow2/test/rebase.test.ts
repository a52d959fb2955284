import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import {
  describeWithTools,
  qemuImg,
  qemuImgCheck,
  qemuImgCompare,
  qemuImgInfo,
  qemuIo,
  tempDir,
} from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { openQcow2 } from "../src/index.js";
import { commitQcow2, rebaseQcow2, setBackingFile } from "../src/rebase.js";

describeWithTools(["qemu-img", "qemu-io"], "rebase and commit, checked by qemu-img", () => {
  let dir: string;
  let n = 0;
  beforeAll(async () => {
    dir = await tempDir("qcow2-rebase-");
  });

  /** base (qcow2 or raw) ← top with some data, a zero range and unallocated areas; plus the raw truth. */
  async function chain(opts: { baseFormat?: "qcow2" | "raw"; topOpts?: string } = {}) {
    const id = n++;
    const fmt = opts.baseFormat ?? "qcow2";
    const base = join(dir, `base${id}.${fmt}`);
    await qemuImg(["create", "-q", "-f", fmt, base, "3M"]);
    await qemuIo(base, ["write -P 0x11 0 3M"], { format: fmt });
    const top = join(dir, `top${id}.qcow2`);
    await qemuImg([
      "create",
      "-q",
      "-f",
      "qcow2",
      "-o",
      opts.topOpts ?? "cluster_size=64k",
      "-b",
      `base${id}.${fmt}`,
      "-F",
      fmt,
      top,
    ]);
    await qemuIo(top, ["write -P 0x22 100k 70k", "write -z 1M 128k", "write -P 0x23 2M 5k"]);
    const truth = join(dir, `truth${id}.raw`);
    await qemuImg(["convert", "-O", "raw", top, truth]);
    return { id, base, top, truth, fmt };
  }

  async function expectClean(p: string) {
    const c = await qemuImgCheck(p);
    expect({ p, exit: c.exitCode, leaks: c.leaks, corruptions: c.corruptions }).toEqual({
      p,
      exit: 0,
      leaks: 0,
      corruptions: 0,
    });
  }

  it("unsafe: only the recorded name/format change (also removal)", async () => {
    const c = await chain();
    const moved = join(dir, "moved-base.qcow2");
    await copyFile(c.base, moved);
    await setBackingFile(c.top, { path: "moved-base.qcow2", format: "qcow2" });
    const info = await qemuImgInfo(c.top);
    expect(info["backing-filename"]).toBe("moved-base.qcow2");
    expect(info["backing-filename-format"]).toBe("qcow2");
    await expectClean(c.top);
    expect((await qemuImgCompare(c.top, c.truth)).identical).toBe(true);
    await setBackingFile(c.top, null);
    expect((await qemuImgInfo(c.top))["backing-filename"]).toBeUndefined();
    await expectClean(c.top);
  });

  it.each([
    ["qcow2", "cluster_size=64k"],
    ["raw", "compat=0.10"],
    ["qcow2", "extended_l2=on,cluster_size=32k"],
  ] as const)(
    "safe: onto a different %s base (%s) and onto nothing, guest view unchanged",
    async (fmt, topOpts) => {
      const c = await chain({ baseFormat: fmt, topOpts });
      const other = join(dir, `other${c.id}.qcow2`);
      await qemuImg(["create", "-q", "-f", "qcow2", other, "2M"]); // shorter and different
      await qemuIo(other, ["write -P 0x11 0 512k", "write -P 0x44 600k 300k"]);
      const stats = await rebaseQcow2(c.top, { path: `other${c.id}.qcow2`, format: "qcow2" });
      expect(stats.bytesCopied).toBeGreaterThan(0);
      expect((await qemuImgInfo(c.top))["backing-filename"]).toBe(`other${c.id}.qcow2`);
      await expectClean(c.top);
      expect((await qemuImgCompare(c.top, c.truth)).output).toContain("Images are identical");
      // where the old and new bases agree (first 512k except what the top stores), nothing was copied
      const dev = await openQcow2(c.top, { readOnly: true, backing: "none" });
      const ext = await dev.mapExtents(0, 64 * 1024);
      await dev.close();
      expect(ext.map((e) => e.kind)).toEqual(["unallocated"]);
      await rebaseQcow2(c.top, null);
      expect((await qemuImgInfo(c.top))["backing-filename"]).toBeUndefined();
      await expectClean(c.top);
      expect((await qemuImgCompare(c.top, c.truth)).output).toContain("Images are identical");
    },
  );

  it.each(["qcow2", "raw"] as const)("commit into a %s base, then the overlay is empty", async (fmt) => {
    const c = await chain({ baseFormat: fmt });
    const r = await commitQcow2(c.top);
    expect(r.bytesCommitted).toBeGreaterThan(0);
    expect((await qemuImgCompare(c.base, c.truth)).output).toContain("Images are identical");
    expect((await qemuImgCompare(c.top, c.truth)).output).toContain("Images are identical");
    if (fmt === "qcow2") await expectClean(c.base);
    await expectClean(c.top);
    const dev = await openQcow2(c.top, { readOnly: true, backing: "none" });
    expect((await dev.mapExtents(0, dev.size)).map((e) => e.kind)).toEqual(["unallocated"]);
    expect(dev.backingInfo?.name).toBe(`base${c.id}.${fmt}`);
    await dev.close();
  });
});
