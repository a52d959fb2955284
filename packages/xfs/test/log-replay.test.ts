/**
 * In-memory log recovery against the kernel: filesystems left with a dirty log by a kernel
 * shutdown (transactions committed to the log, metadata not written back) are read through our
 * replay and compared, whole tree, with what the kernel shows after mounting a copy (which runs
 * its own recovery). The stale on-disk view must differ, or the case proves nothing.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { FileDevice, ImgpatchError } from "@imgpatch/disk";
import {
  describeAsRoot,
  fullSuite,
  mkfsXfs,
  runToolOk,
  withLoopMount,
  xfsRepairCheck,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import {
  logRecordCrc,
  RecoveredDevice,
  readLogTransactions,
  XfsEditor,
  XfsFormatError,
  XfsFs,
  type XfsWarning,
} from "../src/index.js";
import { imageDir } from "./images.js";
import { diffTrees, kernelTree, readerTree } from "./kernel-view.js";

const run = promisify(execFile);

async function readTree(path: string, replayLog: boolean, warnings: XfsWarning[] = []) {
  const dev = await FileDevice.open(path, { readOnly: true });
  try {
    const fs = await XfsFs.open(dev, { replayLog, onWarning: (w) => warnings.push(w) });
    return {
      tree: await readerTree(fs),
      stats: fs.replayStats,
      reasons: fs.readOnlyReasons,
      cycle: fs.logState().headCycle,
    };
  } finally {
    await dev.close();
  }
}

/** Dirty images made once per file by case index; each test gets a private sparse copy. */
const made = new Map<number, Promise<string>>();

/** A private copy of case `i`'s dirty image (the kernel's work is done once per case). */
async function dirtyCase(i: number, name: string): Promise<string> {
  const c = CASES[i];
  let base = made.get(i);
  if (!base) {
    base = dirtyImage(`base${i}`, c.mkfs, c.setup, c.script);
    made.set(i, base);
  }
  const p = join(await imageDir(), `${name}.img`);
  await runToolOk("cp", ["--sparse=always", await base, p]);
  return p;
}

/** Runs `script` (bash, cwd = the mount) on a fresh filesystem, then shuts it down without writing metadata back. */
async function dirtyImage(name: string, mkfsArgs: string[], setup: string, script: string): Promise<string> {
  const dir = await imageDir();
  const p = join(dir, `${name}.img`);
  const mnt = join(dir, "mnt");
  await mkdir(mnt, { recursive: true });
  await mkfsXfs(p, { size: 160 << 20, args: mkfsArgs });
  if (setup) await withLoopMount(p, mnt, { rw: true }, (m) => run("bash", ["-c", setup], { cwd: m }));
  await withLoopMount(p, mnt, { rw: true }, async (m) => {
    await run("bash", ["-c", script], { cwd: m, maxBuffer: 1 << 24 });
    // Flush the log (every change committed to it), then shut down: nothing more is written.
    await runToolOk("xfs_io", ["-x", "-c", "shutdown -f", m]);
  });
  return p;
}

async function compareWithKernel(p: string) {
  const warnings: XfsWarning[] = [];
  const ours = await readTree(p, true, warnings);
  // The on-disk blocks alone may not even form a readable tree (entries naming inodes whose
  // chunk was only initialised in the log): a typed error counts as "different".
  const stale = await readTree(p, false).catch((e: unknown) => ({ error: e as Error }));
  const copy = `${p}.kernel`;
  await copyFile(p, copy);
  const mnt = join(p, "..", "kmnt");
  await mkdir(mnt, { recursive: true });
  // rw: the kernel recovers the log at mount (a read-only loop device would refuse); noatime: its
  // own walk must not change the times it reports.
  const kernel = await withLoopMount(copy, mnt, { rw: true, options: "noatime" }, (m) => kernelTree(m));
  return { ours, stale, kernel, warnings };
}

const CASES: Array<{ name: string; mkfs: string[]; setup: string; script: string }> = [
  {
    // Creates across new inode chunks (icreate), a directory through block/leaf/node forms, file
    // data written and fsynced, symlinks short and long, xattrs, hard links, renames, removals.
    name: "v5 defaults (reflink, rmapbt, finobt, sparse inodes, bigtime)",
    mkfs: [],
    setup: "mkdir old; for i in $(seq 1 300); do echo old$i > old/f$i; done; mkdir gone; echo x > gone/y",
    script: [
      "mkdir -p a/b/c big",
      "for i in $(seq 1 1500); do : > big/name-with-some-length-$i; done",
      "for i in $(seq 1 40); do head -c $((i * 3000)) /dev/urandom > a/file$i; done",
      "sync -f a/file1",
      "ln -s ../a/file1 a/b/short-link",
      `ln -s /${"x".repeat(300)} a/b/long-link`,
      "setfattr -n user.test -v hello a/file2",
      "setfattr -n trusted.big -v $(head -c 300 /dev/zero | tr '\\0' z) a/file3",
      "ln a/file4 a/b/c/hard4",
      "mv old/f1 a/moved",
      "for i in $(seq 2 150); do rm old/f$i; done",
      "rm -r gone",
      "chmod 4755 a/file5; chown 1000:1000 a/file6; touch -d @1234567890 a/file7",
      "mkfifo a/fifo; mknod a/cdev c 1 3",
      "for i in $(seq 1 800); do rm big/name-with-some-length-$i; done",
      // Removed inodes are freed by the kernel's background inactivation; a sync waits for it, so
      // no inode is left on an AGI unlinked list (which the editor leaves to the kernel).
      "sync -f .",
    ].join(" && "),
  },
  {
    name: "v5 with 512-byte inodes, 1 KiB blocks and 8 KiB directory blocks",
    mkfs: ["-i", "size=512", "-b", "size=1024", "-n", "size=8192"],
    setup: "",
    script: [
      "mkdir d",
      "for i in $(seq 1 700); do echo $i > d/entry-$i; done",
      "for i in $(seq 1 30); do head -c 70000 /dev/urandom > f$i; done",
      "for i in $(seq 1 20); do setfattr -n user.a$i -v value$i f1; done",
      "for i in $(seq 1 350); do rm d/entry-$i; done",
    ].join(" && "),
  },
  {
    // A small log that has wrapped, with the tail in the middle: many checkpoints, some of whose
    // blocks were written back (older changes skipped by their LSN), others not.
    name: "v5 with a small wrapped log",
    mkfs: ["-l", "size=1368b"],
    setup: "",
    script: [
      "for r in 1 2 3; do mkdir d$r; for i in $(seq 1 4000); do : > d$r/f$i; done; sync; rm -r d$r; sync; done",
      "mkdir keep; for i in $(seq 1 1200); do echo $i > keep/k$i; done; sync",
      "for i in $(seq 1 600); do mv keep/k$i keep/renamed-$i; done",
      "for i in $(seq 1 400); do rm keep/k$((600 + i)); done",
    ].join(" && "),
  },
];

describeAsRoot(
  ["mkfs.xfs", "xfs_io", "losetup", "getfattr", "setfattr"],
  "XFS log recovery in memory vs the kernel",
  () => {
    for (const c of CASES) {
      it(`${c.name}: the replayed tree is the kernel's after recovery; the stale one is not`, async () => {
        const p = await dirtyCase(CASES.indexOf(c), `case${CASES.indexOf(c)}`);
        const { ours, stale, kernel, warnings } = await compareWithKernel(p);
        expect(diffTrees(kernel, ours.tree)).toEqual([]);
        if ("error" in stale) expect(stale.error).toBeInstanceOf(XfsFormatError);
        else expect(diffTrees(kernel, stale.tree).length).toBeGreaterThan(0);
        expect(ours.stats?.transactions ?? 0).toBeGreaterThan(0);
        if (c.name.includes("wrapped")) expect(ours.cycle).toBeGreaterThanOrEqual(2);
        expect(ours.stats?.inodes ?? 0).toBeGreaterThan(0);
        expect(warnings.map((w) => w.code)).toContain("ELOGREPLAYED");
        expect(ours.reasons.join(" ")).toMatch(/log is not clean/);
      });
    }

    it("the editor recovers a dirty log first (replay written, counters recomputed, unmount record): xfs_repair -n clean, the kernel mounts it without recovery and sees its tree plus our edit", async () => {
      const p = await dirtyCase(0, "edit");
      const copy = `${p}.kernel`;
      await copyFile(p, copy);
      const mnt = join(p, "..", "emnt");
      await mkdir(mnt, { recursive: true });
      const recovered = await withLoopMount(copy, mnt, { rw: true, options: "noatime" }, (m) =>
        kernelTree(m),
      );

      const warnings: XfsWarning[] = [];
      const dev = await FileDevice.open(p);
      const ed = await XfsEditor.open(dev, { onWarning: (w) => warnings.push(w), timestamp: 1700000000 });
      await ed.mkdir("/imgpatch-new");
      await ed.writeFile("/imgpatch-new/hello", new TextEncoder().encode("written after recovery"));
      await ed.writeFile("/a/file9", new TextEncoder().encode("replaced"));
      await ed.close();
      await dev.close();
      expect(warnings.map((w) => w.code)).toEqual(expect.arrayContaining(["ELOGREPLAYED", "ELOGRECOVERED"]));

      const repair = await xfsRepairCheck(p);
      expect(repair.output).toBe(repair.clean ? repair.output : "clean");
      expect(repair.clean).toBe(true);
      const dev2 = await FileDevice.open(p, { readOnly: true });
      try {
        expect((await XfsFs.open(dev2)).logState().state).toBe("clean");
      } finally {
        await dev2.close();
      }
      // The kernel mounts it read-write (it checks metadata LSNs against the log head) and, with
      // norecovery, shows the filesystem exactly as it is on disk.
      await withLoopMount(p, mnt, { rw: true, options: "noatime" }, async () => {});
      const ours = await withLoopMount(p, mnt, { options: "noatime" }, (m) => kernelTree(m));
      const changed = new Set(["/", "/a", "/a/file9", "/imgpatch-new", "/imgpatch-new/hello"]);
      const strip = (t: Map<string, unknown>) => new Map([...t].filter(([k]) => !changed.has(k)));
      expect(diffTrees(strip(recovered) as typeof recovered, strip(ours) as typeof ours)).toEqual([]);
      expect(ours.get("/imgpatch-new/hello")?.size).toBe(22);
      expect(ours.get("/a/file9")?.size).toBe(8);
    });

    it("fuzzed log records (half with their CRC recomputed) give typed errors or a readable tree, never anything else", async () => {
      const p = await dirtyCase(0, "fuzz");
      const dev = await FileDevice.open(p, { readOnly: true });
      try {
        const fs0 = await XfsFs.open(dev, { replayLog: false });
        const log = fs0.logState();
        const geo = fs0.geometry;
        const base = geo.fsbToByte(geo.logStart);
        // Record headers between tail and head, with their sizes.
        const recs: Array<{ bb: number; hblks: number; len: number }> = [];
        for (let bb = Number(log.tailLsn & 0xffffffffn); bb !== log.headBlock; ) {
          const h = Buffer.from(await dev.read(base + bb * 512, 512));
          const len = h.readUInt32BE(12);
          const size = h.readUInt32BE(320);
          const hblks = size > 32768 ? Math.ceil(size / 32768) : 1;
          recs.push({ bb, hblks, len });
          bb = (bb + hblks + Math.ceil(len / 512)) % log.logBBs;
        }
        let seed = 0x5eed1234;
        const rand = (n: number) => {
          seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
          return seed % n;
        };
        const cases = fullSuite() ? 600 : 60;
        let typed = 0;
        let ok = 0;
        for (let c = 0; c < cases; c++) {
          const r = recs[rand(recs.length)];
          const span = (r.hblks + Math.ceil(r.len / 512)) * 512;
          const rec = Buffer.from(await dev.read(base + r.bb * 512, span));
          const at = rand(span);
          rec[at] ^= 1 << rand(8);
          if (c % 2 === 0) {
            const crc = logRecordCrc(rec, 328, r.hblks, r.len);
            rec.writeUInt32LE(crc, 32);
          }
          const patch = new Map<number, Uint8Array>();
          for (let i = 0; i < span / 512; i++)
            patch.set(base / 512 + r.bb + i, rec.subarray(i * 512, (i + 1) * 512));
          try {
            const fs = await XfsFs.open(new RecoveredDevice(dev, patch));
            for await (const _ of fs.walk("/")) {
              // every entry decodes
            }
            ok++;
          } catch (e) {
            if (!(e instanceof ImgpatchError))
              throw new Error(`case ${c} (record ${r.bb}, byte ${at}): ${String(e)}`);
            typed++;
          }
        }
        expect(typed + ok).toBe(cases);
        expect(typed).toBeGreaterThan(cases / 4);
      } finally {
        await dev.close();
      }
    });

    it("a damaged log record before the last few is refused with the log offset, never read stale", async () => {
      const p = await dirtyCase(2, "damaged");
      const dev = await FileDevice.open(p, { readOnly: true });
      let recordAt = -1;
      try {
        const fs = await XfsFs.open(dev);
        const log = fs.logState();
        const geo = fs.geometry;
        const records = await readLogTransactions(geo, (o, l) => dev.read(o, l), log, { file: p });
        expect(records.records).toBeGreaterThan(10);
        // The first record after the tail: flip a byte of its data.
        recordAt = geo.fsbToByte(geo.logStart) + Number(log.tailLsn & 0xffffffffn) * 512;
      } finally {
        await dev.close();
      }
      const fd = await open(p, "r+");
      try {
        const b = Buffer.alloc(1);
        await fd.read(b, 0, 1, recordAt + 512 + 100);
        b[0] ^= 0xff;
        await fd.write(b, 0, 1, recordAt + 512 + 100);
      } finally {
        await fd.close();
      }
      const dev2 = await FileDevice.open(p, { readOnly: true });
      try {
        const err = await XfsFs.open(dev2).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(XfsFormatError);
        expect((err as XfsFormatError).message).toMatch(/checksum/);
        expect((err as XfsFormatError).offset).toBe(recordAt);
        // Asked for the on-disk blocks, it opens with a warning.
        const warnings: XfsWarning[] = [];
        await XfsFs.open(dev2, { replayLog: false, onWarning: (w) => warnings.push(w) });
        expect(warnings.map((w) => w.code)).toContain("ELOGDIRTY");
      } finally {
        await dev2.close();
      }
    });
  },
);
