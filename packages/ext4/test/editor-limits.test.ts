/**
 * Editor limits: filling the filesystem to ENOSPC and to inode exhaustion (typed errors, the
 * filesystem stays e2fsck-clean and keeps working), a sparse file larger than 4 GiB, a deep
 * tree, large directories that must stay indexed (leaf splits and a second index level).
 */
import { Ext4NoSpaceError } from "@imgpatch/ext4";
import {
  debugfs,
  debugfsCat,
  debugfsLs,
  debugfsStat,
  describeWithTools,
  e2fsck,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { expectClean, FEATURE_SETS, makeImage, openEditor } from "./editor-helpers.js";

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: limits", () => {
  for (const fsName of ["ext4-csum", "ext3"] as const) {
    it(`${fsName}: fill to ENOSPC — typed error, fs consistent, still usable`, async () => {
      const dir = await tempDir("edl-");
      const path = await makeImage(dir, "full", FEATURE_SETS[fsName], "8M");
      const ed = await openEditor(path);
      await ed.mkdir("/d");
      const chunk = new Uint8Array(256 * 1024).fill(0x5a);
      let n = 0;
      let err: unknown;
      for (; n < 1000; n++) {
        try {
          await ed.writeFile(`/d/f${n}`, chunk);
        } catch (e) {
          err = e;
          break;
        }
      }
      expect(err).toBeInstanceOf(Ext4NoSpaceError);
      expect((err as Ext4NoSpaceError).code).toBe("ENOSPC");
      // A streamed file that runs out midway leaves nothing behind.
      async function* endless() {
        for (let i = 0; i < 100; i++) yield chunk;
      }
      await expect(ed.writeFile("/d/stream", endless())).rejects.toBeInstanceOf(Ext4NoSpaceError);
      expect(await ed.exists("/d/stream")).toBe(false);
      // Free some space and keep going.
      await ed.unlink("/d/f0");
      await ed.writeFile("/d/after", new Uint8Array(10_000).fill(1));
      await ed.close();
      await expectClean(path);
      expect((await debugfsCat(path, "/d/after")).length).toBe(10_000);
      expect((await debugfsCat(path, `/d/f${n - 1}`)).equals(Buffer.from(chunk))).toBe(true);
    });
  }

  it("inode exhaustion: typed error, fs consistent", async () => {
    const dir = await tempDir("edl-");
    const path = await makeImage(dir, "inodes", ["-t", "ext4", "-N", "64"], "8M");
    const ed = await openEditor(path);
    let err: unknown;
    let made = 0;
    for (let i = 0; i < 200; i++) {
      try {
        await ed.writeFile(`/f${i}`, "x");
        made++;
      } catch (e) {
        err = e;
        break;
      }
    }
    expect(err).toBeInstanceOf(Ext4NoSpaceError);
    expect((err as Ext4NoSpaceError).what).toBe("inodes");
    await expect(ed.mkdir("/dir")).rejects.toBeInstanceOf(Ext4NoSpaceError);
    await ed.close();
    await expectClean(path);
    const names = (await debugfsLs(path, "/")).map((e) => e.name);
    expect(names.filter((x) => x.startsWith("f")).length).toBe(made);
  });

  it("a sparse file larger than 4 GiB", async () => {
    const dir = await tempDir("edl-");
    const path = await makeImage(dir, "sparse", FEATURE_SETS["ext4-csum"], "16M");
    const ed = await openEditor(path);
    await ed.writeFile("/sparse", "head");
    await ed.truncate("/sparse", 5 * 2 ** 30 + 123);
    await ed.writeFile("/shrunk", new Uint8Array(100_000).fill(9));
    await ed.truncate("/shrunk", 4097);
    await ed.close();
    await expectClean(path);
    const st = await debugfsStat(path, "/sparse");
    expect(st.size).toBe(5 * 2 ** 30 + 123);
    const st2 = await debugfsStat(path, "/shrunk");
    expect(st2.size).toBe(4097);
    expect(st2.blockcount).toBeLessThanOrEqual(16);
    const dump = await debugfs(path, ["dump_extents /sparse"]);
    expect(dump).toMatch(/0 -\s+0/);
  });

  it("a deep tree (200 levels) and a fragmented file whose extent tree grows in depth", async () => {
    const dir = await tempDir("edl-");
    const path = await makeImage(dir, "deep", ["-t", "ext4", "-b", "1024"], "32M");
    const ed = await openEditor(path);
    const deep = `/${Array.from({ length: 200 }, (_, i) => `d${i}`).join("/")}`;
    await ed.mkdir(deep, { recursive: true });
    await ed.writeFile(`${deep}/leaf`, "bottom");
    // Fragment free space: many small files, delete every other one, then write a big file.
    for (let i = 0; i < 1200; i++) await ed.writeFile(`/frag${i}`, new Uint8Array(1024).fill(i & 0xff));
    for (let i = 0; i < 1200; i += 2) await ed.unlink(`/frag${i}`);
    const big = new Uint8Array(2_000_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    await ed.writeFile("/big", big);
    await ed.close();
    await expectClean(path);
    expect((await debugfsCat(path, `${deep}/leaf`)).toString()).toBe("bottom");
    expect((await debugfsCat(path, "/big")).equals(Buffer.from(big))).toBe(true);
    const ext = await debugfs(path, ["dump_extents /big"]);
    expect(ext).toMatch(/^\s*1\/\s*[1-9]\s/m); // index levels below the root: the tree grew
  });

  it("a directory grown to 50,000 entries stays indexed (4 KiB blocks)", async () => {
    const dir = await tempDir("edl-");
    const path = await makeImage(dir, "large", ["-t", "ext4", "-b", "4096", "-N", "60000"], "128M");
    const ed = await openEditor(path);
    await ed.mkdir("/big");
    for (let i = 0; i < 50_000; i++) await ed.writeFile(`/big/entry-${i}-${"x".repeat(i % 17)}`, "");
    for (let i = 0; i < 50_000; i += 97) await ed.unlink(`/big/entry-${i}-${"x".repeat(i % 17)}`);
    await ed.close();
    await expectClean(path);
    const st = await debugfsStat(path, "/big");
    expect(st.flags & 0x1000).toBe(0x1000);
    const htree = await debugfs(path, ["htree_dump /big"]);
    expect(htree).toMatch(/Number of entries \(count\): \d+/);
    const names = await debugfsLs(path, "/big");
    expect(names.length).toBe(50_000 - Math.ceil(50_000 / 97) + 2);
  }, 180_000);

  it("1 KiB blocks: an htree that needs a second index level", async () => {
    const dir = await tempDir("edl-");
    const path = await makeImage(dir, "lvl", ["-t", "ext4", "-b", "1024", "-N", "30000"], "64M");
    const ed = await openEditor(path);
    await ed.mkdir("/d");
    for (let i = 0; i < 12_000; i++) await ed.writeFile(`/d/a-fairly-long-file-name-${i}`, "");
    await ed.close();
    await expectClean(path);
    const htree = await debugfs(path, ["htree_dump /d"]);
    expect(htree).toMatch(/Indirect levels: 1/);
    expect((await debugfsLs(path, "/d")).length).toBe(12_002);
  }, 120_000);
});

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: ACLs and capabilities", () => {
  it("POSIX ACLs given in the getxattr(2) form are stored in the ext4 form and read back", async () => {
    const { ACL_TAG, decodePosixAcl, encodePosixAclXattr, encodePosixAclDisk, encodeCapability } =
      await import("@imgpatch/ext4");
    const { debugfsXattrs } = await import("@imgpatch/testkit");
    const dir = await tempDir("edl-");
    const path = await makeImage(dir, "acl", FEATURE_SETS["ext4-csum"], "16M");
    const acl = [
      { tag: ACL_TAG.userObj, perm: 6 },
      { tag: ACL_TAG.user, perm: 4, id: 1000 },
      { tag: ACL_TAG.groupObj, perm: 4 },
      { tag: ACL_TAG.mask, perm: 4 },
      { tag: ACL_TAG.other, perm: 0 },
    ];
    const cap = encodeCapability({ version: 2, effective: true, permitted: 1n << 10n, inheritable: 0n });
    const ed = await openEditor(path);
    await ed.writeFile("/f", "x");
    await ed.setxattr("/f", "system.posix_acl_access", encodePosixAclXattr(acl));
    await ed.setxattr("/f", "security.capability", cap);
    await ed.mkdir("/d");
    await ed.setxattr("/d", "system.posix_acl_default", encodePosixAclXattr(acl));
    expect(
      Buffer.from(await ed.getxattr("/f", "system.posix_acl_access")).equals(
        Buffer.from(encodePosixAclXattr(acl)),
      ),
    ).toBe(true);
    await ed.close();
    const r = await e2fsck(path);
    expect(r.problems, r.output).toEqual([]);
    const xs = await debugfsXattrs(path, "/f");
    expect(Buffer.from(xs["security.capability"]).equals(Buffer.from(cap))).toBe(true);
    const stored = xs["system.posix_acl_access"];
    // debugfs hands ACLs out in the xattr form (ids of the *_OBJ entries as 0); same entries.
    expect(decodePosixAcl(stored)).toEqual(acl);
    // On disk it is the ext4 form (version 1).
    const { Ext4Fs } = await import("@imgpatch/ext4");
    const { FileDevice } = await import("@imgpatch/disk");
    const dev = await FileDevice.open(path, { readOnly: true });
    const fs = await Ext4Fs.open(dev);
    const raw = await fs.getxattr("/f", "system.posix_acl_access", { raw: true });
    expect(Buffer.from(raw).equals(Buffer.from(encodePosixAclDisk(acl)))).toBe(true);
    await dev.close();
    expect(await debugfs(path, ["ea_list /d"])).toMatch(/posix_acl_default/);
  });
});

describeWithTools(["mke2fs", "e2fsck", "debugfs"], "ext4 editor: shared xattr blocks", () => {
  it("a shared xattr block is copied on write and its refcount dropped", async () => {
    const { readFile, writeFile } = await import("node:fs/promises");
    const { debugfsXattrs } = await import("@imgpatch/testkit");
    const dir = await tempDir("edl-");
    const path = await makeImage(dir, "shared", FEATURE_SETS["ext4-nocsum"], "16M");
    const big = new Uint8Array(400).fill(0x42);
    let ed = await openEditor(path);
    await ed.writeFile("/a", "a");
    await ed.writeFile("/b", "b");
    await ed.setxattr("/a", "user.big", big);
    await ed.setxattr("/a", "user.big2", big);
    await ed.close();
    // Make /b share /a's xattr block, as the kernel does for identical sets: file_acl, i_blocks, refcount 2.
    const st = await debugfsStat(path, "/a");
    const blk = st.fileAcl;
    expect(blk).toBeGreaterThan(0);
    await debugfs(path, [`sif /b file_acl ${blk}`, "sif /b blocks 4"], { write: true });
    const img = await readFile(path);
    const bs = 1024;
    img.writeUInt32LE(2, blk * bs + 4); // h_refcount
    await writeFile(path, img);
    await expectClean(path); // the sharing we set up is valid
    ed = await openEditor(path);
    await ed.removexattr("/a", "user.big2");
    await ed.setxattr("/a", "user.big", new Uint8Array(300).fill(0x43));
    await ed.close();
    await expectClean(path);
    const xb = await debugfsXattrs(path, "/b");
    expect(Buffer.from(xb["user.big"]).equals(Buffer.from(big))).toBe(true);
    expect(Buffer.from(xb["user.big2"]).equals(Buffer.from(big))).toBe(true);
    const xa = await debugfsXattrs(path, "/a");
    expect(Object.keys(xa).sort()).toEqual(["user.big"]);
    expect(xa["user.big"].length).toBe(300);
    // Unlinking /b then releases the last reference.
    ed = await openEditor(path);
    await ed.unlink("/b");
    await ed.close();
    await expectClean(path);
  });
});

describeWithTools(["mke2fs", "debugfs"], "ext4 editor: corrupt input", () => {
  it("an extent pointing outside the filesystem fails typed, before anything is written", async () => {
    const { readFile, writeFile } = await import("node:fs/promises");
    const { join } = await import("node:path");
    const { Ext4FormatError } = await import("@imgpatch/ext4");
    const dir = await tempDir("edl-");
    const path = await makeImage(dir, "bad", FEATURE_SETS["ext4-nocsum"], "16M");
    const src = join(dir, "content");
    await writeFile(src, "hello");
    await debugfs(path, [`write ${src} f`, "sif f block[5] 999999"], { write: true });
    const before = await readFile(path);
    const ed = await openEditor(path);
    await expect(ed.unlink("/f")).rejects.toBeInstanceOf(Ext4FormatError);
    await expect(ed.writeFile("/f", "x")).rejects.toBeInstanceOf(Ext4FormatError);
    await expect(ed.truncate("/f", 0)).rejects.toBeInstanceOf(Ext4FormatError);
    await expect(ed.rm("/f", { force: true })).rejects.toBeInstanceOf(Ext4FormatError);
    await ed.close();
    expect(Buffer.compare(await readFile(path), before)).toBe(0);
  });
});
