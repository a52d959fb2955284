// The XfsEditor façade on images made by mkfs.xfs: file contents (extents, a bmbt made of holes,
// truncation, replacement), attributes (chmod/chown/utimes), refusals. Oracles: xfs_repair -n and
// xfs_db check, xfs_db inode fields, and as root the kernel reading every byte back through a
// read-only loop mount.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FileDevice, MemoryDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { dir2Writer } from "../src/dir2-write.js";
import { type DirectoryWriter, XfsEditor } from "../src/editor.js";
import { XfsFsError, XfsUnsupportedError } from "../src/errors.js";
import { pattern } from "./images.js";
import { dbFields, FEATURE_SETS, fsCheck, mkfsImage, XFS_TOOLS, xfsDb } from "./space-helpers.js";

describeWithTools(
  XFS_TOOLS,
  "XfsEditor: file contents and attributes (xfs_repair -n, xfs_db, kernel)",
  () => {
    for (const name of ["v5", "v4", "v5-1k", "v5-rmap-reflink"]) {
      it(`${name}: writeFile (extents, bmbt of holes), truncate, chmod/chown/utimes`, async () => {
        const dir = await tempDir("xfs-edit-");
        const path = mkfsImage(dir, `${name}.img`, FEATURE_SETS[name], 64, 4);
        const dev = await FileDevice.open(path, { readOnly: false });
        const bs = 2 ** Number(dbFields(xfsDb(path, ["sb 0", "print blocklog"])).get("blocklog"));
        const big = pattern(3 * 1024 * 1024 + 123, 7);
        // Every other block non-zero: written sparse, one extent per block (120 > what an inode holds).
        const holey = new Uint8Array(240 * bs);
        for (let b = 0; b < 240; b += 2) holey.set(pattern(bs, b + 1), b * bs);
        const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        try {
          await ed.writeFile("/f0", "x");
          await ed.writeFile("/f1", pattern(3 * bs + 100, 3));
          await ed.writeFile("/f2", big);
          await ed.writeFile("/f3", holey, { sparse: true });
          await ed.chmod("/f0", 0o4755);
          await ed.chown("/f0", 1234, 5678);
          await ed.utimes("/f0", 1_600_000_000, 1_500_000_000);
          await ed.sync();
          let c = fsCheck(path);
          expect(c.output).toBe("");
          expect(c.clean).toBe(true);
          const f3 = dbFields(
            xfsDb(path, ["path /f3", "print core.format core.nextents core.nblocks core.size"]),
          );
          expect(f3.get("core.format")).toBe("3 (btree)");
          expect(Number(f3.get("core.nextents"))).toBe(120);
          expect(Number(f3.get("core.size"))).toBe(holey.length);
          expect(Buffer.from(await ed.readFile("/f2")).equals(Buffer.from(big))).toBe(true);
          expect(Buffer.from(await ed.readFile("/f3")).equals(Buffer.from(holey))).toBe(true);
          const st = await ed.stat("/f0");
          expect([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs]).toEqual([
            0o4755, 1234, 5678, 1_500_000_000_000,
          ]);

          if (isRoot() && name !== "v4") {
            const mnt = join(dir, "mnt");
            mkdirSync(mnt);
            await withLoopMount(path, mnt, {}, async (m) => {
              expect(readFileSync(join(m, "f0"), "utf8")).toBe("x");
              expect(Buffer.from(readFileSync(join(m, "f2"))).equals(Buffer.from(big))).toBe(true);
              expect(Buffer.from(readFileSync(join(m, "f3"))).equals(Buffer.from(holey))).toBe(true);
              const s = statSync(join(m, "f0"));
              expect([s.mode & 0o7777, s.uid, s.gid, s.mtimeMs]).toEqual([
                0o4755, 1234, 5678, 1_500_000_000_000,
              ]);
              const holes = execFileSync("xfs_io", ["-r", "-c", "fiemap", join(m, "f3")], {
                encoding: "utf8",
              });
              expect(holes.split("\n").filter((l) => l.includes("hole")).length).toBe(120);
            });
          }

          // Replace the bmbt file with a small one, cut and empty the others.
          await ed.writeFile("/f3", "small now");
          await ed.truncate("/f1", 10);
          await ed.truncate("/f2", 0);
          await ed.truncate("/f0", 3 * bs);
          await ed.sync();
          c = fsCheck(path);
          expect(c.output).toBe("");
          expect(c.clean).toBe(true);
          expect(new TextDecoder().decode(await ed.readFile("/f3"))).toBe("small now");
          expect((await ed.readFile("/f1")).length).toBe(10);
          expect((await ed.stat("/f2")).size).toBe(0);
          const f0 = await ed.readFile("/f0");
          expect([f0.length, f0[0], f0[1]]).toEqual([3 * bs, 0x78, 0]);
          const sb = dbFields(xfsDb(path, ["sb 0", "print fdblocks"]));
          expect(Number(sb.get("fdblocks"))).toBeGreaterThan(0);
        } finally {
          await ed.close();
          await dev.close();
        }
      });
    }

    it("refuses what it must not edit: directories as files, missing parents, EEXIST", async () => {
      const dir = await tempDir("xfs-edit-refuse-");
      const path = mkfsImage(dir, "r.img", [], 64, 1);
      const dev = await FileDevice.open(path, { readOnly: false });
      const ed = await XfsEditor.open(dev);
      try {
        await expect(ed.writeFile("/", "x")).rejects.toBeInstanceOf(XfsFsError);
        await expect(ed.writeFile("/nodir/new", "x")).rejects.toMatchObject({ code: "ENOENT" });
        await expect(ed.writeFile("/f0", "x", { flag: "wx" })).rejects.toMatchObject({ code: "EEXIST" });
      } finally {
        await ed.close();
        await dev.close();
      }
      expect(fsCheck(path).clean).toBe(true);
    });

    it("writeFile takes streamed sources and explicit times; a source that throws changes nothing", async () => {
      const dir = await tempDir("xfs-edit-stream-");
      const path = mkfsImage(dir, "s.img", [], 64, 1);
      const dev = await FileDevice.open(path, { readOnly: false });
      const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
      try {
        async function* chunks(): AsyncGenerator<Uint8Array> {
          for (let i = 0; i < 10; i++) yield pattern(10_000 + i, i + 1);
        }
        await ed.writeFile("/streamed", chunks(), {
          mtime: new Date(1_234_567_890_000),
          atime: 1_000_000_000,
        });
        await ed.writeFile("/synced", [new Uint8Array([1, 2]), new Uint8Array([3])]);
        async function* broken(): AsyncGenerator<Uint8Array> {
          yield new Uint8Array(5);
          throw new Error("source failed");
        }
        await expect(ed.writeFile("/f0", broken())).rejects.toThrow("source failed");
        const expected = Buffer.concat(
          Array.from({ length: 10 }, (_, i) => Buffer.from(pattern(10_000 + i, i + 1))),
        );
        expect(Buffer.from(await ed.readFile("/streamed")).equals(expected)).toBe(true);
        expect([...(await ed.readFile("/synced"))]).toEqual([1, 2, 3]);
        const st = await ed.stat("/streamed");
        expect([st.mtimeMs, st.atimeMs]).toEqual([1_234_567_890_000, 1_000_000_000_000]);
        expect((await ed.stat("/f0")).size).toBe(0);
      } finally {
        await ed.close();
        await dev.close();
      }
      const c = fsCheck(path);
      expect(c.output).toBe("");
      expect(c.clean).toBe(true);
    });

    it("ENOSPC leaves the file as it was and leaks nothing (all or nothing)", async () => {
      const dir = await tempDir("xfs-edit-enospc-");
      const path = mkfsImage(dir, "n.img", [...FEATURE_SETS["v5-1k"], "-d", "agcount=2"], 32, 2);
      const dev = await FileDevice.open(path, { readOnly: false });
      const ed = await XfsEditor.open(dev, { timestamp: 5 });
      try {
        const before = pattern(40_000, 11);
        await ed.writeFile("/f0", before);
        await ed.sync();
        const free = Number(dbFields(xfsDb(path, ["sb 0", "print fdblocks"])).get("fdblocks"));
        const tooBig = new Uint8Array((free + 10) * 1024).fill(1);
        await expect(ed.writeFile("/f0", tooBig)).rejects.toMatchObject({ code: "ENOSPC" });
        expect(Buffer.from(await ed.readFile("/f0")).equals(Buffer.from(before))).toBe(true);
        // A new file that cannot be written leaves no inode and no name behind (the call rolls back).
        await expect(ed.writeFile("/brand-new", tooBig)).rejects.toMatchObject({ code: "ENOSPC" });
        expect(await ed.exists("/brand-new")).toBe(false);
        await ed.sync();
        const c = fsCheck(path);
        expect(c.output).toBe("");
        expect(Number(dbFields(xfsDb(path, ["sb 0", "print fdblocks"])).get("fdblocks"))).toBe(free);
        expect(xfsDb(path, ["path /", "ls"])).not.toContain("brand-new");
        // Nearly all of the space still fits (in both AGs), replacing the old content: all but the
        // kernel's per-AG metadata reservation (ag-resv.ts: rmapbt, refcountbt and finobt growth,
        // ~9% of this small 1 KiB-block filesystem).
        const most = new Uint8Array((free - 200 - Math.ceil(free * 0.1)) * 1024).fill(2);
        await ed.writeFile("/f1", most);
        await ed.sync();
        expect(fsCheck(path).clean).toBe(true);
      } finally {
        await ed.close();
        await dev.close();
      }
    });

    it("refuses an external log and a read-only device", async () => {
      const dir = await tempDir("xfs-edit-extlog-");
      const log = join(dir, "log.img");
      execFileSync("truncate", ["-s", "16M", log]);
      const path = mkfsImage(dir, "x.img", ["-l", `logdev=${log},size=2048b`], 64);
      const dev = await FileDevice.open(path, { readOnly: false });
      try {
        await expect(XfsEditor.open(dev)).rejects.toMatchObject({ feature: "external-log" });
      } finally {
        await dev.close();
      }
      const ro = await FileDevice.open(path, { readOnly: true });
      try {
        await expect(XfsEditor.open(ro)).rejects.toMatchObject({ code: "EROFS" });
      } finally {
        await ro.close();
      }
    });

    if (isRoot()) {
      it("refuses a dirty log when asked not to recover it (recoverLog: false), with advice", async () => {
        const dir = await tempDir("xfs-edit-dirty-");
        const path = mkfsImage(dir, "d.img", [], 64);
        const mnt = join(dir, "mnt");
        mkdirSync(mnt);
        await withLoopMount(path, mnt, { rw: true }, async (m) => {
          execFileSync("sh", ["-c", `echo hi > ${m}/a && sync -f ${m}/a`]);
          execFileSync("xfs_io", ["-x", "-c", "shutdown", m]);
        });
        const dev = await FileDevice.open(path, { readOnly: false });
        try {
          // The default recovers it first (log-replay.test.ts checks that against the kernel).
          const err = await XfsEditor.open(dev, { recoverLog: false }).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(XfsUnsupportedError);
          expect(err).toMatchObject({ feature: "dirty-log" });
          expect(String(err)).toMatch(/xfs_repair/);
        } finally {
          await dev.close();
        }
      });
    }
  },
);

describeWithTools(XFS_TOOLS, "XfsEditor across geometries (xfs_repair -n, xfs_db check)", () => {
  const GEOMETRIES: [string, string[], number][] = [
    // 1 KiB inodes: 64 a block (the reader's inode chunk read assumes no more than 64 a block).
    ["64 KiB blocks", ["-b", "size=65536", "-i", "size=1024"], 256],
    ["64 KiB blocks, rmapbt", ["-b", "size=65536", "-i", "size=1024", "-m", "rmapbt=1"], 512],
    ["2 KiB inodes", ["-i", "size=2048"], 64],
    ["v5, 512 B sectors", ["-s", "size=512"], 64],
    ["64 KiB directory blocks", ["-n", "size=65536"], 64],
    ["v4, 256 B inodes, 1 KiB blocks", [...FEATURE_SETS.v4, "-i", "size=256", "-b", "size=1024"], 64],
    // Large extent counts, and a new UUID after mkfs (metadata keeps the old one: meta_uuid).
    ["nrext64, meta_uuid", ["-i", "nrext64=1"], 64],
  ];
  for (const [name, args, size] of GEOMETRIES) {
    it(`${name}: files, a bmbt of holes, a directory of 150 names, renames, rm -r`, async () => {
      const dir = await tempDir("xfs-geo-");
      const path = mkfsImage(dir, "g.img", args, size, 1);
      if (name.includes("meta_uuid")) {
        execFileSync("xfs_admin", ["-U", "generate", path], { stdio: "ignore" });
        expect(dbFields(xfsDb(path, ["sb 0", "print features_incompat"])).get("features_incompat")).toBe(
          "0x2f",
        );
      }
      const dev = await FileDevice.open(path, { readOnly: false });
      const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
      const bs = ed.ctx.geo.blockSize;
      const holey = new Uint8Array(100 * bs);
      for (let b = 0; b < 100; b += 2) holey[b * bs + 1] = b + 1;
      try {
        await ed.writeFile("/f0", holey, { sparse: true });
        await ed.writeFile("/big", pattern(2 * 1024 * 1024 + 5, 3));
        await ed.mkdir("/d/e", { recursive: true });
        for (let i = 0; i < 150; i++) await ed.writeFile(`/d/name-number-${i}`, `v${i}`);
        await ed.setxattr("/d/name-number-7", "security.selinux", "system_u:object_r:etc_t:s0\0");
        await ed.rename("/d/e", "/e");
        await ed.rename("/d/name-number-3", "/e/three");
        for (let i = 0; i < 150; i += 4) await ed.unlink(`/d/name-number-${i}`);
        await ed.symlink("x".repeat(700), "/e/long");
        expect(Buffer.from(await ed.readFile("/f0")).equals(Buffer.from(holey))).toBe(true);
        expect((await ed.readdir("/d")).length).toBe(150 - 38 - 1);
      } finally {
        await ed.close();
        await dev.close();
      }
      let c = fsCheck(path);
      expect(c.output).toBe("");
      expect(c.clean).toBe(true);
      const dev2 = await FileDevice.open(path, { readOnly: false });
      const ed2 = await XfsEditor.open(dev2, { timestamp: 1_700_000_001 });
      try {
        await ed2.rm("/d", { recursive: true });
        await ed2.rm("/e", { recursive: true });
        await ed2.writeFile("/f0", "small");
      } finally {
        await ed2.close();
        await dev2.close();
      }
      c = fsCheck(path);
      expect(c.output).toBe("");
      expect(c.clean).toBe(true);
    });
  }
});

describeWithTools(XFS_TOOLS, "XfsEditor transactions", () => {
  it("a call that fails half way leaves the image byte for byte as it was", async () => {
    const dir = await tempDir("xfs-edit-tx-");
    // 1 KiB blocks, rmapbt: the failing calls touch AGF/AGFL/bnobt/cntbt/rmapbt, AGI/inobt/finobt.
    const path = mkfsImage(dir, "t.img", FEATURE_SETS["v5-1k"], 64, 2);
    const image = new Uint8Array(readFileSync(path));
    const dev = new MemoryDevice(image, {}, path);
    let failAfterAdd = false;
    const flaky: DirectoryWriter = {
      async addEntry(ed, d, name, ino, mode) {
        await dir2Writer.addEntry(ed, d, name, ino, mode);
        if (failAfterAdd) throw new XfsFsError("EINVAL", "injected failure after the entry was added", "/x");
      },
      removeEntry: (ed, d, name) => dir2Writer.removeEntry(ed, d, name),
    };
    const ed = await XfsEditor.open(dev, { timestamp: 10, directories: flaky });
    try {
      await ed.mkdir("/d");
      for (let i = 0; i < 100; i++) await ed.writeFile(`/d/f${i}`, new Uint8Array(3000).fill(i));
      await ed.sync();
      const before = dev.bytes.slice();
      failAfterAdd = true;
      // Enough new inodes to need a new chunk, and new data: all of it must be undone.
      for (let i = 0; i < 80; i++) {
        await expect(ed.writeFile(`/d/new${i}`, new Uint8Array(5000).fill(1))).rejects.toMatchObject({
          code: "EINVAL",
        });
      }
      await expect(ed.mkdir("/e")).rejects.toMatchObject({ code: "EINVAL" });
      failAfterAdd = false;
      await ed.sync();
      expect(Buffer.from(dev.bytes).equals(Buffer.from(before))).toBe(true);
      // And the editor goes on working from there.
      await ed.writeFile("/d/after", "ok");
      await ed.sync();
    } finally {
      await ed.close();
    }
    writeFileSync(path, dev.bytes);
    const c = fsCheck(path);
    expect(c.output).toBe("");
    expect(c.clean).toBe(true);
  });
});
