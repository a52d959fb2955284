/**
 * The per-AG metadata reservation (ag-resv.ts): a filesystem the editor fills until ENOSPC must
 * still give the kernel its finobt/refcountbt/rmapbt reservation at mount. Oracles: `xfs_repair
 * -n` clean, and as root the kernel's own verdict: a read-write loop mount must not log "Per-AG
 * reservation for AG N failed" (it does for an AG filled to the last block).
 */
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, mkfsXfs, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/index.js";
import { imageDir } from "./images.js";

const run = promisify(execFile);

const SETS: [string, string[]][] = [
  ["v5 rmapbt+reflink, 2 AGs (the log in AG 1)", ["-m", "rmapbt=1,reflink=1", "-d", "agcount=2"]],
  ["v5 finobt, 4 AGs", ["-d", "agcount=4"]],
];

/**
 * The kernel's messages from a read-write mount of `img`: its loop device's lines from the
 * "Mounting ... Filesystem <uuid>" line of this filesystem on (the ring buffer may be full, so
 * lines are found by content, not counted).
 */
async function mountMessages(img: string, dir: string): Promise<string[]> {
  const uuid = /uuid = (\S+)/.exec(await xfsDb(img, ["sb 0", "print uuid"]))?.[1] ?? "?";
  const mnt = join(dir, "mnt");
  await mkdir(mnt, { recursive: true });
  const loop = (await run("losetup", ["--find", "--show", img])).stdout.trim();
  try {
    await run("mount", ["-t", "xfs", loop, mnt]);
    try {
      const tag = `(${loop.replace("/dev/", "")})`;
      const lines = (await run("dmesg", [], { maxBuffer: 1 << 26 })).stdout
        .split("\n")
        .filter((l) => l.includes(tag));
      let start = -1;
      lines.forEach((l, i) => {
        if (l.includes("Mounting") && l.includes(uuid)) start = i;
      });
      return start < 0 ? [] : lines.slice(start);
    } finally {
      await run("umount", [mnt]);
    }
  } finally {
    await run("losetup", ["-d", loop]);
  }
}

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "per-AG metadata reservation", () => {
  for (const [name, args] of SETS) {
    it(`${name}: filled to ENOSPC, the kernel still gets its reservation`, async () => {
      const dir = await imageDir();
      const img = join(dir, "fill.img");
      await mkfsXfs(img, { size: 320 << 20, args, proto: { type: "dir", entries: {} } });
      const dev = await FileDevice.open(img);
      try {
        const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        const big = Buffer.alloc(4 << 20, 7);
        let n = 0;
        await expect(
          (async () => {
            for (;;) await ed.writeFile(`/big${n++}`, big);
          })(),
        ).rejects.toMatchObject({ code: "ENOSPC" });
        await expect(
          (async () => {
            for (;;) await ed.writeFile(`/small${n++}`, Buffer.alloc(4096, 1));
          })(),
        ).rejects.toMatchObject({ code: "ENOSPC" });
        await ed.close();
        await dev.flush();
      } finally {
        await dev.close();
      }
      const r = await xfsRepairCheck(img);
      expect(r.clean, r.output).toBe(true);
      // Nearly full: under 1% of the data blocks left free.
      const fd = Number(/fdblocks = (\d+)/.exec(await xfsDb(img, ["sb 0", "print fdblocks"]))?.[1]);
      const dblocks = Number(/dblocks = (\d+)/.exec(await xfsDb(img, ["sb 0", "print dblocks"]))?.[1]);
      expect(fd / dblocks).toBeLessThan(0.03);
      if (!isRoot()) return;
      const msgs = await mountMessages(img, dir);
      expect(msgs.join("\n")).toContain("Ending clean mount");
      expect(msgs.filter((l) => /reservation|out of space|corrupt/i.test(l))).toEqual([]);
    }, 600_000);
  }
});
