/**
 * Journals written by the kernel: an image is loop-mounted as root, written, its journal
 * committed (sync -f, fsync for fast commits), and the backing file copied while still
 * mounted, so the copy holds committed transactions that were not checkpointed. Our in-memory
 * replay is compared with e2fsck -E journal_only's (every block of the filesystem but the two
 * superblocks it rewrites) and with the tree the kernel shows after its own recovery.
 */
import { execFile } from "node:child_process";
import { copyFile, lstat, mkdir, readdir, readFile, readlink, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { FileDevice } from "@imgpatch/disk";
import { Ext4Editor, Ext4Fs, Ext4UnsupportedError } from "@imgpatch/ext4";
import { debugfsRaw, describeWithTools, e2fsck, oraclesRequired, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { sha256 } from "./helpers.js";

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
if (!isRoot && oraclesRequired())
  throw new Error("kernel journal tests need root (IMGPATCH_ORACLES=required)");

/**
 * Make `out`: mke2fs, loop mount, run `work` (bash, cwd = the mount), copy while mounted. With
 * `until`, `work` is run again (up to 40 times) until the copy satisfies it.
 */
async function crashImage(
  out: string,
  mkfs: string[],
  work: string,
  until?: (img: string) => Promise<boolean>,
  size = "96M",
): Promise<void> {
  const src = `${out}.src`;
  await run("truncate", ["-s", size, src]);
  await run("mke2fs", ["-q", "-F", ...mkfs, src]);
  const mnt = `${out}.mnt`;
  await mkdir(mnt, { recursive: true });
  const loop = (await run("losetup", ["-f", "--show", src])).stdout.trim();
  try {
    await run("mount", [loop, mnt]);
    try {
      for (let i = 0; ; i++) {
        await run("bash", ["-ec", work], { cwd: mnt });
        await run("cp", ["--sparse=always", src, out]);
        if (!until || (await until(out))) break;
        if (i === 40) throw new Error(`${out}: the workload never produced the journal wanted`);
      }
    } finally {
      await run("umount", [mnt]);
    }
  } finally {
    await run("losetup", ["-d", loop]);
    await rm(src, { force: true });
  }
}

/** The kernel's recovery on a copy (a rw mount and unmount), then the tree it shows read-only. */
async function kernelTree(img: string, work: string): Promise<string[]> {
  const copy = `${work}.k.img`;
  await copyFile(img, copy);
  const mnt = `${work}.kmnt`;
  await mkdir(mnt, { recursive: true });
  const loop = (await run("losetup", ["-f", "--show", copy])).stdout.trim();
  try {
    await run("mount", [loop, mnt]);
    await run("umount", [mnt]);
    await run("mount", ["-o", "ro,noload", loop, mnt]);
    try {
      const lines: string[] = [];
      const walk = async (rel: string) => {
        const p = join(mnt, rel);
        const st = await lstat(p);
        let extra = "";
        if (st.isFile()) extra = sha256(await readFile(p));
        else if (st.isSymbolicLink()) extra = await readlink(p);
        const x = (await run("getfattr", ["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", p])).stdout
          .split("\n")
          .filter((l) => l.includes("="))
          .map((l) => l.replace("=0x", "="))
          .sort()
          .join(",");
        lines.push(
          `${rel || "/"} ${st.ino} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.nlink} ${Math.floor(st.mtimeMs / 1000)} ${extra} ${x}`,
        );
        if (st.isDirectory()) for (const n of await readdir(p)) await walk(`${rel}/${n}`);
      };
      await walk("");
      return lines.sort();
    } finally {
      await run("umount", [mnt]);
    }
  } finally {
    await run("losetup", ["-d", loop]);
    await rm(copy, { force: true });
  }
}

/** The same listing from our reader. */
async function ourTree(fs: Ext4Fs): Promise<string[]> {
  const lines: string[] = [];
  for await (const e of fs.walk("/")) {
    const s = e.stats;
    let extra = "";
    if (s.isFile()) extra = sha256(await fs.readFile(e.path));
    else if (s.isSymbolicLink()) extra = await fs.readlink(e.path);
    const xs: string[] = [];
    for (const n of await fs.llistxattr(e.path))
      xs.push(`${n}=${Buffer.from(await fs.lgetxattr(e.path, n)).toString("hex")}`);
    lines.push(
      `${e.path} ${e.ino} ${s.mode.toString(8)} ${s.uid}:${s.gid} ${s.size} ${s.nlink} ${Math.floor(s.mtimeMs / 1000)} ${extra} ${xs.sort().join(",")}`,
    );
  }
  return lines.sort();
}

/**
 * e2fsck -y -E journal_only on a copy (with -f, 1.47.0 goes on to a full check and repair); every filesystem block of our replayed view must equal
 * it, except the primary superblock's block and the journal superblock (both rewritten by it).
 */
async function compareWithE2fsck(img: string, fs: Ext4Fs): Promise<void> {
  const theirs = `${img}.e2fsck.img`;
  await copyFile(img, theirs);
  const r = await runTool("e2fsck", ["-y", "-E", "journal_only", theirs]);
  expect(r.exitCode, r.stderr).toBeLessThan(4);
  const o = await FileDevice.open(theirs, { readOnly: true });
  try {
    const bs = fs.blockSize;
    const jsbBlock = (await fs.mapBlock(await fs.readInode(fs.sb.journalInum), 0)).physical;
    const sbBlock = bs === 1024 ? 1 : 0;
    const diffs: number[] = [];
    const chunk = 256;
    for (let b = 0; b < fs.sb.blocksCount; b += chunk) {
      const n = Math.min(chunk, fs.sb.blocksCount - b);
      const x = await fs.device.read(b * bs, n * bs);
      const y = await o.read(b * bs, n * bs);
      for (let i = 0; i < n; i++) {
        if (b + i === sbBlock || b + i === jsbBlock) continue;
        if (Buffer.compare(x.subarray(i * bs, (i + 1) * bs), y.subarray(i * bs, (i + 1) * bs)) !== 0)
          diffs.push(b + i);
      }
    }
    expect(diffs).toEqual([]);
  } finally {
    await o.close();
    await rm(theirs, { force: true });
  }
}

/** debugfs logdump says the live log runs past the journal's end back to its start. */
async function logWraps(img: string): Promise<boolean> {
  const log = (await debugfsRaw(img, ["logdump"])).stdout.toString();
  const start = /Journal starts at block (\d+)/.exec(log);
  const end = /at block (\d+): end of journal/.exec(log);
  return !!start && !!end && Number(end[1]) < Number(start[1]);
}

const SYNC = "sync -f .";
const FSYNC = (f: string) => `python3 -c "import os; os.fsync(os.open('${f}', os.O_RDWR))"`;

describeWithTools(
  ["mke2fs", "e2fsck", "debugfs", "losetup", "mount", "getfattr", "python3"],
  "journal: kernel-made",
  () => {
    let dir: string;
    beforeAll(async () => {
      dir = await tempDir("ext4-kjournal-");
    });
    const maybe = isRoot ? it : it.skip;

    // Files, xattrs, symlinks, hard links, then deletions of directories and an extent-indexed
    // file (their metadata blocks are freed, so the kernel writes revoke records).
    const churn = [
      "mkdir -p a/b c",
      "for i in $(seq 1 60); do head -c $((i*997)) /dev/zero | tr '\\0' x > a/b/f$i; done",
      "setfattr -n user.k -v v1 a/b/f1; ln -s ../a/b/f2 c/l; ln a/b/f3 c/h; chmod 640 a/b/f4; chown 7:8 a/b/f5",
      SYNC,
      "for i in $(seq 1 30); do mkdir -p d/$i; for j in 1 2 3 4 5 6 7 8; do echo $i$j > d/$i/longer-name-to-fill-the-block-$j; done; done",
      "for i in $(seq 1 40); do dd if=/dev/zero of=frag bs=4k count=1 seek=$((i*2)) conv=notrunc status=none; done",
      SYNC,
      "rm -rf d/1* d/2* frag; setfattr -n user.k -v v2 a/b/f1; echo again > a/b/f6",
      SYNC,
    ].join("\n");

    const cases: {
      name: string;
      mkfs: string[];
      work: string;
      incompat: number;
      wraps?: boolean;
      revokes?: boolean;
    }[] = [
      {
        name: "csum v3, 64-bit tags, 4 KiB",
        mkfs: ["-t", "ext4", "-b", "4096"],
        work: churn,
        incompat: 0x12,
        revokes: true,
      },
      {
        name: "no checksums, 32-bit tags, 1 KiB",
        mkfs: ["-t", "ext4", "-b", "1024", "-O", "^64bit,^metadata_csum"],
        work: churn,
        incompat: 0,
        revokes: true,
      },
      {
        name: "wrapped log (1 MiB journal, 1 KiB blocks)",
        mkfs: ["-t", "ext4", "-b", "1024", "-J", "size=1"],
        // Rounds of 30 files, a directory with a symlink and an xattr, deleting the previous round.
        work: [
          "mkdir -p a b; r=$(cat a/round 2>/dev/null || echo 0)",
          "for k in 1 2 3 4; do r=$((r+1)); for i in $(seq 1 30); do head -c $((i*700)) /dev/zero | tr '\\0' $((r % 10)) > a/f$r.$i; done; rm -f a/f$((r-1)).*; mkdir b/d$r; ln -s ../a/f$r.1 b/d$r/l; setfattr -n user.r -v $r b/d$r; rm -rf b/d$((r-3)); echo $r > a/round; sync -f a; done",
        ].join("\n"),
        incompat: 0x12,
        wraps: true,
      },
    ];

    for (const c of cases) {
      maybe(
        `${c.name}: the in-memory replay is e2fsck's and the kernel's`,
        async () => {
          const img = join(dir, `${c.name.replace(/\W+/g, "-")}.img`);
          await crashImage(img, c.mkfs, c.work, c.wraps ? logWraps : undefined);
          const stale = await Ext4Fs.open(await FileDevice.open(img, { readOnly: true }), {
            replayJournal: false,
          });
          expect(stale.journal.needsRecovery).toBe(true);
          const jsb = stale.journal.superblock!;
          expect(jsb.start).not.toBe(0);
          // 64-bit tags and checksums v3 as expected (the revoke flag is set once one is logged).
          expect(jsb.featureIncompat & 0x1e).toBe(c.incompat);
          await stale.close();
          const log = (await debugfsRaw(img, ["logdump"])).stdout.toString();
          if (c.revokes) expect(log).toMatch(/revoke/i);
          const fs = await Ext4Fs.open(await FileDevice.open(img, { readOnly: true }));
          try {
            expect(fs.journal.replayed!.transactions).toBeGreaterThan(0);
            expect(fs.warnings).toEqual([]);
            if (c.wraps) {
              const scan = await fs.scanJournal();
              expect([...scan.replay.values()].some((e) => e.journalBlock < jsb.start)).toBe(true);
            }
            await compareWithE2fsck(img, fs);
            expect(await ourTree(fs)).toEqual(await kernelTree(img, img));
          } finally {
            await fs.close();
          }
        },
        120_000,
      );
    }

    maybe(
      "fast commits to replay are refused with a typed error; a stale fast-commit area is ignored like the kernel does",
      async () => {
        const live = join(dir, "fc-live.img");
        await crashImage(
          live,
          ["-t", "ext4", "-b", "4096", "-O", "fast_commit"],
          `mkdir -p a; ${SYNC}; for i in $(seq 1 12); do head -c $((i*300)) /dev/zero | tr '\\0' q > a/f$i; ${FSYNC("a/f$i")}; done`,
          // The kernel's periodic full commit (every 5 s) can land before the copy and leave the
          // fast-commit area stale: take copies until one has fast commits waiting.
          async (img) => {
            const d = await FileDevice.open(img, { readOnly: true });
            try {
              await Ext4Fs.open(d);
              return false;
            } catch (e) {
              return e instanceof Ext4UnsupportedError;
            } finally {
              await d.close();
            }
          },
        );
        const dev = await FileDevice.open(live, { readOnly: true });
        const err = await Ext4Fs.open(dev).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(Ext4UnsupportedError);
        expect((err as Ext4UnsupportedError).feature).toBe("fast_commit");
        expect(String(err)).toMatch(/fast-commit area holds \d+ records/);
        // The editor refuses too, replay requested or not.
        const wdev = await FileDevice.open(live);
        await expect(Ext4Editor.open(wdev, { replayJournal: true })).rejects.toBeInstanceOf(
          Ext4UnsupportedError,
        );
        await wdev.close();

        // Fast commits followed by a full commit: the area starts with a HEAD for an older tid.
        const stale = join(dir, "fc-stale.img");
        await crashImage(
          stale,
          ["-t", "ext4", "-b", "4096", "-O", "fast_commit"],
          `mkdir a; ${SYNC}; for i in $(seq 1 6); do echo $i > a/f$i; ${FSYNC("a/f$i")}; done; mkdir b; echo x > b/y; setfattr -n user.s -v 1 b/y; ${SYNC}`,
        );
        const log = (await debugfsRaw(stale, ["logdump"])).stdout.toString();
        expect(log).toMatch(/tag HEAD/);
        const fs = await Ext4Fs.open(await FileDevice.open(stale, { readOnly: true }));
        try {
          expect(fs.journal.replayed!.transactions).toBeGreaterThan(0);
          // e2fsck 1.47.0 fails recovery on such an area ("Invalid argument"); the kernel ignores it.
          expect(await ourTree(fs)).toEqual(await kernelTree(stale, stale));
          expect(await fs.readFile("/b/y")).toEqual(Buffer.from("x\n"));
        } finally {
          await fs.close();
        }
        // The editor replays it onto the device (the jbd2 part) and edits: e2fsck -fn clean.
        const ed = await Ext4Editor.open(await FileDevice.open(stale), {
          replayJournal: true,
          timestamp: 1_700_000_000,
        });
        await ed.writeFile("/b/after", "z");
        await ed.close();
        const r = await e2fsck(stale);
        expect(r.problems, r.output).toEqual([]);
      },
      120_000,
    );

    maybe(
      "the editor refuses a kernel journal needing recovery, or replays it first on request (e2fsck -fn clean)",
      async () => {
        const img = join(dir, "edit.img");
        await crashImage(img, ["-t", "ext4", "-b", "4096"], churn);
        const dev = await FileDevice.open(img);
        const refused = await Ext4Editor.open(dev).catch((e: unknown) => e);
        expect(refused).toBeInstanceOf(Ext4UnsupportedError);
        expect(String(refused)).toMatch(/replayJournal: true/);
        await dev.close();
        const before = await Ext4Fs.open(await FileDevice.open(img, { readOnly: true }));
        const tree = await ourTree(before);
        await before.close();
        const ed = await Ext4Editor.open(await FileDevice.open(img), {
          replayJournal: true,
          timestamp: 1_700_000_000,
        });
        await ed.writeFile("/after", "edited");
        await ed.close();
        const r = await e2fsck(img);
        expect(r.problems, r.output).toEqual([]);
        const after = await Ext4Fs.open(await FileDevice.open(img, { readOnly: true }));
        try {
          expect(after.journal.needsRecovery).toBe(false);
          expect(
            (await ourTree(after)).filter((l) => !l.startsWith("/ ") && !l.startsWith("/after ")),
          ).toEqual(tree.filter((l) => !l.startsWith("/ ")));
          expect(await after.readFile("/after")).toEqual(Buffer.from("edited"));
        } finally {
          await after.close();
        }
      },
      120_000,
    );
  },
);
