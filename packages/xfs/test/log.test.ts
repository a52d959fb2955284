/**
 * Log state against xfs_logprint: clean logs (mkfs, kernel unmount) and a dirty one (a kernel
 * mount shut down without flushing the log, like fstests' godown), head position included.
 * Replay itself is checked against the kernel in log-replay.test.ts.
 */
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { FileDevice } from "@imgpatch/disk";
import { describeAsRoot, describeWithTools, mkfsXfs, runToolOk, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsFs, type XfsWarning } from "../src/index.js";
import { imageDir, V4_ARGS } from "./images.js";

const run = promisify(execFile);

async function logprint(path: string): Promise<{ tail: number; head: number; state: string }> {
  const out = (await runToolOk("xfs_logprint", ["-t", path])).toString("utf8");
  const m = /log tail: (\d+) head: (\d+) state: <(\w+)>/.exec(out);
  if (!m) throw new Error(`unexpected xfs_logprint output: ${out}`);
  return { tail: Number(m[1]), head: Number(m[2]), state: m[3] };
}

async function openState(path: string, warnings: XfsWarning[] = []) {
  const dev = await FileDevice.open(path, { readOnly: true });
  try {
    const fs = await XfsFs.open(dev, { onWarning: (w) => warnings.push(w) });
    return { log: fs.logState(), fs, names: await fs.readdir("/") };
  } finally {
    await dev.close();
  }
}

describeWithTools(["mkfs.xfs", "xfs_logprint"], "log state (mkfs)", () => {
  it("a freshly made v4 or v5 log is clean, with the head where xfs_logprint finds it", async () => {
    const dir = await imageDir();
    for (const [name, args] of [
      ["v4", V4_ARGS],
      ["v5", []],
      ["v5-512", ["-s", "size=512", "-l", "size=2500b"]],
    ] as const) {
      const p = join(dir, `${name}.img`);
      await mkfsXfs(p, { size: 96 << 20, args });
      const lp = await logprint(p);
      const { log } = await openState(p);
      expect(lp.state).toBe("CLEAN");
      expect(log.state).toBe("clean");
      expect(log.headBlock).toBe(lp.head);
      expect(log.headCycle).toBe(1);
    }
  });
});

describeAsRoot(["mkfs.xfs", "xfs_logprint", "xfs_io", "losetup"], "log state (kernel)", () => {
  it("after a clean unmount the log is clean; after a shutdown it is dirty and reads warn", async () => {
    const dir = await imageDir();
    const p = join(dir, "k.img");
    const mnt = join(dir, "mnt");
    await mkdir(mnt);
    await mkfsXfs(p, { size: 96 << 20 });
    await withLoopMount(p, mnt, { rw: true }, async (m) => {
      for (let i = 0; i < 50; i++) await run("bash", ["-c", `echo ${i} > ${m}/f${i}; mkdir ${m}/d${i}`]);
    });
    let lp = await logprint(p);
    let s = await openState(p);
    expect([lp.state, s.log.state]).toEqual(["CLEAN", "clean"]);
    expect(s.log.headBlock).toBe(lp.head);
    expect(s.fs.readOnlyReasons).toEqual([]);

    await withLoopMount(p, mnt, { rw: true }, async (m) => {
      await run("bash", ["-c", `for i in $(seq 1 40); do echo x > ${m}/g$i; done; sync`]);
      await run("bash", ["-c", `echo y > ${m}/late`]);
      // Shut down without flushing the log: the unmount record is never written.
      await runToolOk("xfs_io", ["-x", "-c", "shutdown", m]);
    });
    lp = await logprint(p);
    const warnings: XfsWarning[] = [];
    s = await openState(p, warnings);
    expect(lp.state).toBe("DIRTY");
    expect(s.log.state).toBe("dirty");
    // Replayed in memory for reading (log-replay.test.ts compares the result with the kernel's).
    expect(warnings.map((w) => w.code)).toContain("ELOGREPLAYED");
    expect(s.fs.readOnlyReasons.join(" ")).toMatch(/boot the guest once or run xfs_repair/);
    expect(s.names).toEqual(expect.arrayContaining(["f49", "g40"]));
    // Without replay, the on-disk blocks are read with a warning that they may be stale.
    const stale: XfsWarning[] = [];
    const dev = await FileDevice.open(p, { readOnly: true });
    try {
      await XfsFs.open(dev, { replayLog: false, onWarning: (w) => stale.push(w) });
    } finally {
      await dev.close();
    }
    expect(stale.map((w) => w.code)).toContain("ELOGDIRTY");
  });

  it("finds the head of a log that has wrapped (cycle 2+) where xfs_logprint does", async () => {
    const dir = await imageDir();
    const p = join(dir, "w.img");
    const mnt = join(dir, "mnt");
    await mkdir(mnt);
    await mkfsXfs(p, { size: 96 << 20, args: ["-l", "size=1368b"] });
    await withLoopMount(p, mnt, { rw: true }, async (m) => {
      const script =
        "for r in 1 2 3; do mkdir d$r; for i in $(seq 1 4000); do : > d$r/f$i; done; sync; rm -rf d$r; sync; done";
      await run("bash", ["-c", script], { cwd: m });
    });
    const lp = await logprint(p);
    const { log } = await openState(p);
    expect(lp.state).toBe("CLEAN");
    expect(log.state).toBe("clean");
    expect(log.headCycle).toBeGreaterThanOrEqual(2);
    expect(log.headBlock).toBe(lp.head);
    expect(Number(log.lastLsn >> 32n)).toBe(log.headCycle);
  });
});
