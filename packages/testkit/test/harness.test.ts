import { chmod, mkdir, readdir, readFile, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  built,
  builtCopy,
  DebugfsBatch,
  debugfs,
  debugfsBlocks,
  debugfsCat,
  debugfsLs,
  debugfsRdump,
  debugfsStat,
  debugfsXattrs,
  describeWithTools,
  dumpe2fs,
  e2fsck,
  FIXTURES_DIR,
  OracleError,
  oracleTools,
  parseDebugfsStat,
  qemuImg,
  qemuImgCheck,
  qemuImgCompare,
  qemuImgInfo,
  qemuIo,
  rpm2cpio,
  rpmDump,
  rpmQuery,
  runToolOk,
  tempDir,
} from "../src/index.js";

const FAKE_TIME = "1700000000";
const MTIME = 1_600_000_000;

/** A small ext4 image made by mke2fs -d from a tree whose contents the tests know. */
async function makeExt4(dir: string, extra: string[] = []): Promise<string> {
  const src = join(dir, "src");
  await mkdir(join(src, "sub"), { recursive: true });
  await writeFile(join(src, "hello.txt"), "hello, world\n");
  await chmod(join(src, "hello.txt"), 0o640);
  await utimes(join(src, "hello.txt"), MTIME, MTIME);
  await writeFile(join(src, "sub", "bin"), Buffer.from([0, 1, 2, 255]));
  await symlink("hello.txt", join(src, "fast"));
  await symlink("x".repeat(200), join(src, "slow"));
  const img = join(dir, "fs.img");
  await runToolOk("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "1024", ...extra, "-d", src, img, "4M"], {
    env: { E2FSPROGS_FAKE_TIME: FAKE_TIME },
  });
  return img;
}

describe("built", () => {
  it("builds once per key, shares the result, rebuilds when an input changes", async () => {
    const dir = await tempDir();
    const script = join(dir, "script");
    await writeFile(script, "one");
    let builds = 0;
    const build = async (out: string) => {
      builds++;
      await writeFile(out, await readFile(script));
    };
    const name = `harness-${process.pid}-${Date.now()}`;
    const inputs = { name, files: [script], params: ["x=1"] };
    const [a, b] = await Promise.all([built(inputs, build), built(inputs, build)]);
    expect(a).toBe(b);
    expect(builds).toBe(1);
    expect(await readFile(a, "utf8")).toBe("one");
    const copy = await builtCopy(inputs, build, join(dir, "copy"));
    expect(await readFile(copy, "utf8")).toBe("one");
    expect(builds).toBe(1);
    await writeFile(script, "two");
    const c = await built(inputs, build);
    expect(c).not.toBe(a);
    expect(await readFile(c, "utf8")).toBe("two");
    const d = await built({ ...inputs, params: ["x=2"] }, build);
    expect(d).not.toBe(c);
    expect(builds).toBe(3);
    for (const p of [a, c, d]) await rm(p, { force: true });
  });
});

describe("oracleTools", () => {
  it("reports a missing tool with a reason, or throws when oracles are required", () => {
    const saved = process.env.IMGPATCH_ORACLES;
    try {
      delete process.env.IMGPATCH_ORACLES;
      const r = oracleTools("imgpatch-no-such-tool");
      expect(r.ok).toBe(false);
      expect(r.reason).toContain("imgpatch-no-such-tool");
      process.env.IMGPATCH_ORACLES = "required";
      expect(() => oracleTools("imgpatch-no-such-tool")).toThrow(/required/);
    } finally {
      if (saved === undefined) delete process.env.IMGPATCH_ORACLES;
      else process.env.IMGPATCH_ORACLES = saved;
    }
  });

  it("tempDir gives distinct existing directories", async () => {
    const a = await tempDir();
    const b = await tempDir("other-");
    expect(a).not.toBe(b);
    expect((await stat(a)).isDirectory()).toBe(true);
  });

  it("parses a 128-byte-inode stat (no extra fields) with signed times", () => {
    const raw = [
      "Inode: 12   Type: regular    Mode:  4755   Flags: 0x0",
      "Generation: 7    Version: 0x00000000",
      "User:  1000   Group:   100   Size: 6",
      "File ACL: 307",
      "Links: 2   Blockcount: 4",
      "Fragment:  Address: 0    Number: 0    Size: 0",
      "ctime: 0xffffffff -- Wed Dec 31 23:59:59 1969",
      "atime: 0x6b08bd8d -- Thu Nov 26 23:15:25 2026",
      "mtime: 0x6b08bd8d -- Thu Nov 26 23:15:25 2026",
    ].join("\n");
    const st = parseDebugfsStat(raw);
    expect(st).toMatchObject({ inode: 12, type: "file", mode: 0o104755, perm: 0o4755, uid: 1000, gid: 100 });
    expect(st).toMatchObject({ size: 6, links: 2, generation: 7, fileAcl: 307, project: undefined });
    expect(st.ctime).toEqual({ sec: -1, nsec: 0 });
    expect(st.crtime).toBeUndefined();
  });

  it("decodes the epoch bits and nanoseconds of extra time fields", () => {
    const raw = [
      "Inode: 13   Type: directory    Mode:  1777   Flags: 0x80000",
      "Generation: 0    Version: 0x00000000:00000000",
      "User:     0   Group:     0   Project:     0   Size: 1024",
      "File ACL: 0",
      "Links: 2   Blockcount: 2",
      " ctime: 0x00000010:00000005 -- x",
      "crtime: 0x80000000:0000000a -- x",
    ].join("\n");
    const st = parseDebugfsStat(raw);
    expect(st.mode).toBe(0o41777);
    expect(st.ctime).toEqual({ sec: 16 + 2 ** 32, nsec: 1 });
    expect(st.crtime).toEqual({ sec: -(2 ** 31) + 2 * 2 ** 32, nsec: 2 });
  });
});

describeWithTools(["mke2fs", "e2fsck", "debugfs", "dumpe2fs"], "e2fsprogs oracles", () => {
  it("e2fsck passes a fresh filesystem and reports a corrupted one", async () => {
    const dir = await tempDir();
    const img = await makeExt4(dir);
    const ok = await e2fsck(img);
    expect(ok.problems).toEqual([]);
    expect(ok.clean).toBe(true);
    await debugfs(img, ["sif /hello.txt links_count 5"], { write: true });
    const bad = await e2fsck(img);
    expect(bad.clean).toBe(false);
    expect(bad.exitCode).toBe(4);
    expect(bad.problems.join("\n")).toMatch(/ref count is 5, should be 1/);
  });

  it("e2fsck reports an unreadable superblock instead of throwing", async () => {
    const dir = await tempDir();
    const img = join(dir, "zero.img");
    await writeFile(img, Buffer.alloc(1 << 20));
    const r = await e2fsck(img);
    expect(r.clean).toBe(false);
    expect(r.exitCode).toBe(8);
    expect(r.problems.join("\n")).toMatch(/superblock/i);
  });

  it("stat, cat, ls and xattrs read back what mke2fs -d copied", async () => {
    const dir = await tempDir();
    const img = await makeExt4(dir);
    const st = await debugfsStat(img, "/hello.txt");
    expect(st).toMatchObject({
      type: "file",
      mode: 0o100640,
      perm: 0o640,
      uid: process.getuid?.() ?? 0, // mke2fs -d copies the owner of the source tree: whoever runs the test
      gid: process.getgid?.() ?? 0,
      size: 13,
      links: 1,
    });
    expect(st.mtime).toEqual({ sec: MTIME, nsec: 0 });
    expect(st.crtime).toEqual({ sec: Number(FAKE_TIME), nsec: 0 });
    expect(st.flags & 0x80000).toBe(0x80000); // extents
    expect((await debugfsCat(img, "/hello.txt")).toString()).toBe("hello, world\n");
    expect(await debugfsCat(img, "/sub/bin")).toEqual(Buffer.from([0, 1, 2, 255]));
    expect((await debugfsStat(img, "/fast")).linkTarget).toBe("hello.txt");
    const slow = await debugfsStat(img, "/slow");
    expect(slow).toMatchObject({ type: "symlink", mode: 0o120777, size: 200, linkTarget: "x".repeat(200) });

    const ls = await debugfsLs(img, "/");
    const names = ls.map((e) => e.name).sort();
    expect(names).toEqual([".", "..", "fast", "hello.txt", "lost+found", "slow", "sub"]);
    expect(ls.find((e) => e.name === "sub")).toMatchObject({ type: "dir", mode: 0o40755 });
    expect(ls.find((e) => e.name === "hello.txt")).toMatchObject({ type: "file", size: 13, inode: st.inode });

    // Set owner and xattrs (binary and text) through debugfs, then read them back.
    const val = join(dir, "val");
    await writeFile(val, Buffer.from([0, 0xff, 10, 0x22]));
    await debugfs(
      img,
      [
        "sif /hello.txt uid 1234",
        "sif /hello.txt gid 4321",
        `ea_set -f ${val} /hello.txt user.bin`,
        "ea_set /hello.txt user.txt abc",
      ],
      { write: true },
    );
    expect(await debugfsStat(img, "/hello.txt")).toMatchObject({ uid: 1234, gid: 4321 });
    const xa = await debugfsXattrs(img, "/hello.txt");
    expect(Object.keys(xa).sort()).toEqual(["user.bin", "user.txt"]);
    expect(xa["user.bin"]).toEqual(Buffer.from([0, 0xff, 10, 0x22]));
    expect(xa["user.txt"].toString()).toBe("abc");
    expect(await debugfsXattrs(img, "/sub")).toEqual({});
    expect((await e2fsck(img)).clean).toBe(true);
  });

  it("inline_data files: stat and cat work, system.data is not reported as an xattr", async () => {
    const dir = await tempDir();
    const img = await makeExt4(dir, ["-O", "inline_data"]);
    const st = await debugfsStat(img, "/hello.txt");
    expect(st.flags & 0x10000000).toBe(0x10000000);
    expect(st.inlineDataSize).toBeGreaterThan(0);
    expect((await debugfsCat(img, "/hello.txt")).toString()).toBe("hello, world\n");
    expect(await debugfsXattrs(img, "/hello.txt")).toEqual({});
  });

  it("a missing path throws instead of returning empty output", async () => {
    const dir = await tempDir();
    const img = await makeExt4(dir);
    await expect(debugfsStat(img, "/nope")).rejects.toThrow(OracleError);
    await expect(debugfsCat(img, "/nope")).rejects.toThrow(/not found/);
    await expect(debugfsLs(img, "/nope")).rejects.toThrow(OracleError);
  });

  it("blocks and rdump", async () => {
    const dir = await tempDir();
    const img = await makeExt4(dir);
    const blocks = await debugfsBlocks(img, "/hello.txt");
    expect(blocks).toHaveLength(1);
    // The block debugfs names holds the file's bytes.
    const raw = await readFile(img);
    expect(raw.subarray(blocks[0] * 1024, blocks[0] * 1024 + 13).toString()).toBe("hello, world\n");
    expect(await debugfsBlocks(img, "/fast")).toEqual([]);
    const out = await tempDir();
    const copy = await debugfsRdump(img, "/sub", out);
    expect(copy).toBe(join(out, "sub"));
    expect(await readFile(join(copy, "bin"))).toEqual(Buffer.from([0, 1, 2, 255]));
    await expect(debugfsRdump(img, "/missing", out)).rejects.toThrow(OracleError);
  });

  it("dumpe2fs -h fields", async () => {
    const dir = await tempDir();
    const img = await makeExt4(dir, ["-U", "0b1d2c3e-0000-4000-8000-000000000001"]);
    const sb = await dumpe2fs(img);
    expect(sb["Block size"]).toBe("1024");
    expect(sb["Filesystem UUID"]).toBe("0b1d2c3e-0000-4000-8000-000000000001");
    expect(sb["Filesystem features"].split(" ")).toContain("metadata_csum");
    expect(sb["Inode size"]).toBe("256");
  });

  it("DebugfsBatch answers exactly as the one-path functions, and falls back to them on an error", async () => {
    for (const extra of [[], ["-O", "inline_data"]]) {
      const dir = await tempDir();
      const img = await makeExt4(dir, extra);
      const val = join(dir, "val");
      await writeFile(val, Buffer.from([0, 0xff, 10, 0x22]));
      await debugfs(img, [`ea_set -f ${val} /hello.txt user.bin`, "ea_set /sub user.txt abc"], {
        write: true,
      });
      // A name with a space and a line that looks like the batch's echo: the split must hold.
      await writeFile(val, "x\ndebugfs: stat /fast\n");
      await debugfs(img, [`write ${val} "/with space"`], { write: true });
      const files = ["/hello.txt", "/sub/bin", "/with space"];
      const all = [...files, "/fast", "/slow", "/sub", "/"];
      const b = await DebugfsBatch.read(
        { path: img },
        { stat: all, cat: files, xattrs: all, ls: ["/", "/sub"] },
      );
      expect(b.batched).toBe(true);
      for (const p of all) {
        expect(await b.stat(p), p).toEqual(await debugfsStat(img, p));
        expect(await b.xattrs(p), p).toEqual(await debugfsXattrs(img, p));
      }
      for (const p of files) expect(await b.cat(p), p).toEqual(await debugfsCat(img, p));
      for (const d of ["/", "/sub"]) expect(await b.ls(d), d).toEqual(await debugfsLs(img, d));
      expect((await b.xattrs("/hello.txt"))["user.bin"]).toEqual(Buffer.from([0, 0xff, 10, 0x22]));
      expect((await b.stat("/slow")).linkTarget).toBe("x".repeat(200));
      // A missing path: debugfs complains, so every answer comes from the one-path functions.
      const bad = await DebugfsBatch.read(img, { stat: ["/hello.txt", "/nope"], cat: ["/sub/bin"] });
      expect(bad.batched).toBe(false);
      expect(await bad.stat("/hello.txt")).toEqual(await debugfsStat(img, "/hello.txt"));
      expect(await bad.cat("/sub/bin")).toEqual(Buffer.from([0, 1, 2, 255]));
      await expect(bad.stat("/nope")).rejects.toThrow(OracleError);
    }
  });

  it("every wrapper reaches a filesystem at a byte offset (a partition)", async () => {
    const dir = await tempDir();
    const img = await makeExt4(dir);
    const disk = join(dir, "disk?odd name.img"); // '?' must not be taken for an io option
    const offset = 1 << 20;
    const fsBytes = await readFile(img);
    const whole = Buffer.alloc(offset + fsBytes.length + 65536);
    fsBytes.copy(whole, offset);
    await writeFile(disk, whole);
    const target = { path: disk, offset };
    expect((await e2fsck(target)).clean).toBe(true);
    expect((await e2fsck(disk)).clean).toBe(false); // no superblock at 0
    expect((await debugfsCat(target, "/hello.txt")).toString()).toBe("hello, world\n");
    expect((await debugfsStat(target, "/hello.txt")).size).toBe(13);
    expect((await debugfsLs(target, "/sub")).map((e) => e.name)).toContain("bin");
    expect((await dumpe2fs(target))["Block size"]).toBe("1024");
    await debugfs(target, ["sif /hello.txt links_count 3"], { write: true });
    expect((await e2fsck(target)).clean).toBe(false);
  });
});

describeWithTools(["qemu-img", "qemu-io"], "qemu oracles", () => {
  it("qemuImgCheck is clean on a fresh image and counts a leak made by a raw write", async () => {
    const dir = await tempDir();
    const q = join(dir, "a.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", q, "16M"]);
    await qemuIo(q, ["write -P 0xab 0 64k"], { format: "qcow2" });
    const ok = await qemuImgCheck(q);
    expect(ok).toMatchObject({ clean: true, leaks: 0, corruptions: 0, exitCode: 0 });
    // Drop the L2 entry of the only data cluster: its refcount stays 1 with nothing using it.
    const buf = await readFile(q);
    const l1 = Number(buf.readBigUInt64BE(40));
    const l2 = Number(buf.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
    buf.fill(0, l2, l2 + 8);
    await writeFile(q, buf);
    const leak = await qemuImgCheck(q);
    expect(leak).toMatchObject({ clean: false, leaks: 1, corruptions: 0, exitCode: 3 });
    // Point the L2 entry at the L1 table's cluster instead: refcount 1, referenced twice.
    buf.writeBigUInt64BE(0x8000000000000000n | BigInt(l1), l2);
    await writeFile(q, buf);
    const corrupt = await qemuImgCheck(q);
    expect(corrupt.clean).toBe(false);
    expect(corrupt.corruptions).toBeGreaterThan(0);
    expect(corrupt.exitCode).toBe(2);
  });

  it("qemuImgInfo, qemuImgCompare and qemuIo pattern checks", async () => {
    const dir = await tempDir();
    const q = join(dir, "b.qcow2");
    const r = join(dir, "b.raw");
    await qemuImg(["create", "-q", "-f", "qcow2", "-o", "cluster_size=4096,compat=0.10", q, "1M"]);
    await qemuImg(["create", "-q", "-f", "raw", r, "1M"]);
    const info = await qemuImgInfo(q);
    expect(info["virtual-size"]).toBe(1 << 20);
    expect(info["cluster-size"]).toBe(4096);
    expect(info.format).toBe("qcow2");
    expect((await qemuImgCompare(q, r)).identical).toBe(true);
    await qemuIo(r, ["write -P 0x5a 8192 512"], { format: "raw" });
    const diff = await qemuImgCompare(q, r, { formatA: "qcow2", formatB: "raw" });
    expect(diff).toMatchObject({ identical: false, exitCode: 1, mismatchOffset: 8192 });
    await qemuIo(r, ["read -P 0x5a 8192 512"], { format: "raw" });
    await expect(qemuIo(r, ["read -P 0x5b 8192 512"], { format: "raw" })).rejects.toThrow(
      /Pattern verification failed/,
    );
    await expect(qemuImgCompare(q, join(dir, "missing"))).rejects.toThrow(OracleError);
  });
});

const RPM_DIR = join(FIXTURES_DIR, "rpm", "out");

describeWithTools(["rpm", "rpm2cpio"], "rpm oracles", () => {
  it("rpmQuery, rpmDump and rpm2cpio agree with rpm's own listing", async () => {
    const pkgs = (await readdir(RPM_DIR)).filter((n) => n.endsWith(".rpm")).sort();
    expect(pkgs.length).toBeGreaterThan(0);
    const pkg = join(RPM_DIR, pkgs[0]);
    expect((await rpmQuery(pkg, "%{NAME}")).trim()).not.toBe("");
    const files = await rpmDump(pkg);
    const listed = (await rpmQuery(pkg, "[%{FILENAMES}\\n]")).split("\n").filter(Boolean);
    expect(files.map((f) => f.path)).toEqual(listed);
    for (const f of files) {
      expect(f.path.startsWith("/")).toBe(true);
      expect(Number.isInteger(f.mode)).toBe(true);
    }
    const reg = files.find((f) => (f.mode & 0o170000) === 0o100000 && f.size > 0);
    expect(reg?.digest).toMatch(/^[0-9a-f]{32,128}$/);
    const cpio = await rpm2cpio(pkg);
    expect(cpio.subarray(0, 6).toString()).toBe("070701");
    await expect(rpmQuery(join(RPM_DIR, "no-such.rpm"), "%{NAME}")).rejects.toThrow(OracleError);
  });
});
