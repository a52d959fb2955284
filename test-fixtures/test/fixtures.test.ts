// Checks every committed fixture with the real tools: the images are what fixtures.json says,
// the filesystems are clean (also at partition offsets), the qcow2 files pass qemu-img check, and
// the filesystems hold what the source-tree manifests (taken on the host) say.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  DebugfsBatch,
  describeWithTools,
  dumpe2fs,
  e2fsck,
  type FixtureInfo,
  type FsTarget,
  fixture,
  fixtureFile,
  fixtureInfo,
  fixtureManifest,
  fixtureNames,
  type ManifestEntry,
  qemuImg,
  qemuImgCheck,
  qemuImgCompare,
  qemuImgInfo,
  qemuIo,
  runToolOk,
  tempDir,
} from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const names = fixtureNames();

/** Every filesystem made from a tree that can be reached on a raw image: [fixture, target, manifest, label]. */
function extTargets(): { name: string; target: () => Promise<FsTarget>; manifest: string; label: string }[] {
  const out: { name: string; target: () => Promise<FsTarget>; manifest: string; label: string }[] = [];
  for (const n of names) {
    const f = fixtureInfo(n);
    if (f.format === "qcow2" && f.manifest && !f.sameContentAs) {
      // Not a copy of a raw fixture (e.g. an overlay): check the flattened guest view.
      out.push({ name: n, target: () => flatten(n), manifest: f.manifest, label: `${n} (flattened)` });
    }
    if (f.format !== "raw") continue;
    if (f.manifest) out.push({ name: n, target: () => fixture(n), manifest: f.manifest, label: n });
    for (const p of f.partitions ?? []) {
      if (!p.manifest) continue;
      out.push({
        name: n,
        target: async () => ({ path: await fixture(n), offset: p.offset }),
        manifest: p.manifest,
        label: `${n} p${p.number} (${p.content} at ${p.offset})`,
      });
    }
  }
  return out;
}

const flattened = new Map<string, Promise<string>>();
/** The guest-visible bytes of a qcow2 fixture as a raw file (qemu-img convert), once per file. */
function flatten(name: string): Promise<string> {
  let p = flattened.get(name);
  if (!p) {
    p = (async () => {
      const out = join(await tempDir(), `${name}.raw`);
      await qemuImg(["convert", "-f", "qcow2", "-O", "raw", await fixture(name), out]);
      return out;
    })();
    flattened.set(name, p);
  }
  return p;
}

describe("fixture index", () => {
  it("lists the required kinds of fixture", () => {
    const all = names.map(fixtureInfo);
    const ext = all.filter((f) => f.format === "raw" && f.features);
    expect(
      ext.some((f) => f.features!.includes("metadata_csum") && f.features!.includes("orphan_file")),
    ).toBe(true);
    expect(ext.some((f) => f.features!.includes("uninit_bg") && !f.features!.includes("metadata_csum"))).toBe(
      true,
    );
    expect(ext.some((f) => f.features!.includes("inline_data"))).toBe(true);
    expect(ext.some((f) => f.content === "ext3" && !f.features!.includes("extent"))).toBe(true);
    expect(ext.some((f) => f.content === "ext2")).toBe(true);
    expect(new Set(ext.map((f) => f.blockSize))).toEqual(new Set([1024, 4096]));
    const q = all.filter((f) => f.qcow2).map((f) => f.qcow2!);
    expect(q.some((x) => x.compat === "0.10")).toBe(true);
    expect(new Set(q.map((x) => x.clusterSize))).toEqual(new Set([512, 65536, 2097152]));
    expect(q.some((x) => x.compressed)).toBe(true);
    expect(q.some((x) => x.extendedL2)).toBe(true);
    expect(q.some((x) => x.zeroClusters)).toBe(true);
    expect(all.some((f) => f.backing && f.manifest)).toBe(true);
    expect(all.some((f) => f.backing && f.content === "pattern")).toBe(true);
    expect(all.some((f) => f.snapshots?.length)).toBe(true);
    expect(all.some((f) => f.broken && f.qemuCheck!.leaks > 0)).toBe(true);
    expect(all.some((f) => f.broken && f.qemuCheck!.corruptions > 0)).toBe(true);
    expect(all.some((f) => f.content === "gpt") && all.some((f) => f.content === "mbr")).toBe(true);
  });

  it("fixture() decompresses to the recorded bytes (and caches)", async () => {
    for (const n of names) {
      const info = fixtureInfo(n);
      const p = await fixture(n);
      const data = await readFile(p);
      expect(data.length, n).toBe(info.size);
      expect(sha256(data), n).toBe(info.sha256);
      expect(await fixture(n)).toBe(p);
    }
    // Each pattern sector names itself.
    const raw = await readFile(await fixture("pattern.raw"));
    expect(raw.subarray(7 * 512, 7 * 512 + 25).toString()).toBe("imgpatch sector 00000007\n");
    expect(raw.subarray(2 << 19, 4 << 19).every((b) => b === 0)).toBe(true); // hole [1 MiB, 2 MiB)
    expect(raw.subarray(5 << 19, 7 << 19).every((b) => b === 0)).toBe(true); // hole [2.5 MiB, 3.5 MiB)
    expect(raw.subarray(4 << 19, 5 << 19).some((b) => b !== 0)).toBe(true);
  });
});

describeWithTools(["qemu-img", "qemu-io"], "fixture images (qemu-img)", () => {
  for (const n of names) {
    const info: FixtureInfo = fixtureInfo(n);
    it(`${n}: format, size and guest-visible content`, async () => {
      const path = await fixture(n);
      const qi = await qemuImgInfo(path, { format: info.format });
      expect(qi.format).toBe(info.format);
      expect(qi["virtual-size"]).toBe(info.virtualSize);
      if (info.format === "qcow2") {
        const check = await qemuImgCheck(path, { format: "qcow2" });
        expect(check.clean, JSON.stringify(check.json)).toBe(!info.broken);
        expect({ exitCode: check.exitCode, leaks: check.leaks, corruptions: check.corruptions }).toEqual(
          info.qemuCheck,
        );
        const data = (qi["format-specific"] as { data: Record<string, unknown> }).data;
        expect(data.compat).toBe(info.qcow2!.compat);
        expect(qi["cluster-size"]).toBe(info.qcow2!.clusterSize);
        expect(data["refcount-bits"]).toBe(info.qcow2!.refcountBits);
        expect(data["extended-l2"] ?? false).toBe(info.qcow2!.extendedL2);
        if (info.backing) expect(qi["backing-filename"]).toBe(info.backing.recorded);
        else expect(qi["backing-filename"]).toBeUndefined();
        const dir = await tempDir();
        const flat = join(dir, "flat.raw");
        await qemuImg(["convert", "-f", "qcow2", "-O", "raw", path, flat]);
        expect(sha256(await readFile(flat))).toBe(info.contentSha256);
        const snaps = (qi.snapshots ?? []) as { id: string; name: string }[];
        expect(snaps.map((x) => x.name)).toEqual((info.snapshots ?? []).map((x) => x.name));
        for (const snap of info.snapshots ?? []) {
          const sflat = join(dir, "snap.raw");
          await qemuImg([
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            "-l",
            `snapshot.name=${snap.name}`,
            path,
            sflat,
          ]);
          expect(sha256(await readFile(sflat)), snap.name).toBe(snap.contentSha256);
          expect(snap.contentSha256).toBe(fixtureInfo("pattern.raw").contentSha256);
        }
      } else {
        expect(info.contentSha256).toBe(info.sha256);
      }
      if (info.sameContentAs) {
        const other = await fixture(info.sameContentAs);
        const cmp = await qemuImgCompare(path, other, {
          formatA: info.format,
          formatB: fixtureInfo(info.sameContentAs).format,
        });
        expect(cmp.identical, cmp.output).toBe(true);
      }
      for (const [off, len] of info.zeroRanges ?? []) {
        await qemuIo(path, [`read -P 0 ${off} ${len}`], { format: info.format });
      }
    });
  }
});

describeWithTools(["sfdisk"], "fixture disks (sfdisk)", () => {
  for (const n of names.filter((x) => fixtureInfo(x).sfdiskJson && fixtureInfo(x).format === "raw")) {
    it(`${n}: sfdisk --json matches the committed dump and the index`, async () => {
      const info = fixtureInfo(n);
      const path = await fixture(n);
      const live = JSON.parse(
        (await runToolOk("sfdisk", ["--json", path])).toString("utf8").replaceAll(`${path}`, n),
      );
      const saved = JSON.parse(await readFile(fixtureFile(info.sfdiskJson!), "utf8"));
      expect(live).toEqual(saved);
      const parts = live.partitiontable.partitions as {
        node: string;
        start: number;
        size: number;
        type: string;
      }[];
      expect(parts.map((p) => [p.start * 512, p.size * 512, p.type])).toEqual(
        info.partitions!.map((p) => [p.offset, p.size, p.type]),
      );
    });
  }
});

describeWithTools(["fdisk"], "fixture disks with 4 KiB sectors (fdisk)", () => {
  for (const n of names.filter((x) => fixtureInfo(x).sfdiskScript)) {
    it(`${n}: fdisk -b ${fixtureInfo(n).sectorSize} dumps the committed table`, async () => {
      const info = fixtureInfo(n);
      const path = await fixture(n);
      const dump = join(await tempDir(), "dump");
      await runToolOk("fdisk", ["-b", String(info.sectorSize), path], { input: `O\n${dump}\nq\n` });
      const live = (await readFile(dump, "utf8")).replaceAll(path, n);
      expect(live).toBe(await readFile(fixtureFile(info.sfdiskScript!), "utf8"));
      // The primary GPT header is in LBA 1, i.e. at byte 4096 on a 4 KiB-sector disk.
      const head = await readFile(path);
      expect(head.subarray(info.sectorSize!, info.sectorSize! + 8).toString()).toBe("EFI PART");
      expect(head.readUInt16LE(510)).toBe(0xaa55); // protective MBR
    });
  }
});

describeWithTools(["e2fsck", "debugfs", "dumpe2fs"], "fixture filesystems (e2fsprogs)", () => {
  for (const t of extTargets()) {
    it(`${t.label}: e2fsck -fn is clean and the features are as indexed`, async () => {
      const target = await t.target();
      const r = await e2fsck(target);
      expect(r.problems).toEqual([]);
      expect(r.clean).toBe(true);
      const info = fixtureInfo(t.name);
      const expected =
        typeof target === "string"
          ? info.features
          : info.partitions!.find((p) => p.offset === target.offset)!.features;
      expect((await dumpe2fs(target))["Filesystem features"].split(" ")).toEqual(expected);
    });

    it(`${t.label}: contents agree with the source-tree manifest`, async () => {
      const target = await t.target();
      const manifest = fixtureManifest(t.manifest).entries;
      const sb = await dumpe2fs(target);
      const bigInodes = Number(sb["Inode size"]) > 128;
      // Every entry outside the big directory, and a sample of it (all its names are checked by ls).
      const sample = manifest.filter((e, i) => !e.path.startsWith("/bigdir/") || i % 997 === 0);
      const extra = fixtureInfo(t.name).extraFiles ?? [];
      const dirs = manifest.filter((e) => e.type === "dir");
      const hasBig = manifest.some((e) => e.path === "/bigdir");
      // Every debugfs read below, from one debugfs process (answers as from debugfsStat etc.).
      const dfs = await DebugfsBatch.read(target, {
        stat: [...sample.map((e) => e.path), ...extra.map((x) => x.path), ...(hasBig ? ["/bigdir"] : [])],
        cat: [...sample.filter((e) => e.type === "file").map((e) => e.path), ...extra.map((x) => x.path)],
        xattrs: sample.map((e) => e.path),
        ls: dirs.map((d) => d.path),
      });
      const inodeOfGroup = new Map<number, number>();
      for (const e of sample) await checkEntry(dfs, e, bigInodes, inodeOfGroup);
      for (const x of extra) {
        const st = await dfs.stat(x.path);
        expect([st.mode, st.uid, st.gid], x.path).toEqual([x.mode, x.uid, x.gid]);
        expect((await dfs.cat(x.path)).toString(), x.path).toBe(x.text);
      }
      if (hasBig) {
        const big = await dfs.stat("/bigdir");
        expect(big.flags & 0x1000, "/bigdir is htree-indexed (EXT4_INDEX_FL)").toBe(0x1000);
      }
      // Directory listings: exactly the manifest's children (plus lost+found at the root).
      for (const dir of dirs) {
        const prefix = dir.path === "/" ? "/" : `${dir.path}/`;
        const want = manifest
          .filter(
            (e) => e.path.startsWith(prefix) && e.path !== "/" && !e.path.slice(prefix.length).includes("/"),
          )
          .map((e) => e.path.slice(prefix.length));
        if (dir.path === "/") want.push("lost+found");
        // (lost+found itself is not in the manifest; ext4-overlay adds a file there)
        const got = (await dfs.ls(dir.path)).map((e) => e.name).filter((x) => x !== "." && x !== "..");
        expect(got.sort(), dir.path).toEqual(want.sort());
      }
    });
  }
});

async function checkEntry(
  dfs: DebugfsBatch,
  e: ManifestEntry,
  bigInodes: boolean,
  groups: Map<number, number>,
) {
  const where = e.path;
  const st = await dfs.stat(e.path);
  expect(st.type, where).toBe(e.type);
  expect(st.mode, where).toBe(e.mode);
  expect([st.uid, st.gid], where).toEqual([e.uid, e.gid]);
  if (e.type !== "dir") expect(st.links, where).toBe(e.nlink);
  if (e.type === "file" || e.type === "symlink") expect(st.size, where).toBe(e.size);
  if (e.type === "symlink") expect(st.linkTarget, where).toBe(e.target);
  if (e.type === "file") expect(sha256(await dfs.cat(e.path)), where).toBe(e.sha256);
  if (e.rdev) expect(st.rdev, where).toEqual(e.rdev);
  // 128-byte inodes keep whole seconds only.
  expect(st.mtime, where).toEqual(bigInodes ? e.mtime : { sec: e.mtime.sec, nsec: 0 });
  const xa = await dfs.xattrs(e.path);
  const got = Object.fromEntries(Object.entries(xa).map(([k, v]) => [k, v.toString("base64")]));
  expect(got, where).toEqual(e.xattrs);
  if (e.hardlinkGroup !== undefined) {
    const ino = groups.get(e.hardlinkGroup);
    if (ino === undefined) groups.set(e.hardlinkGroup, st.inode);
    else expect(st.inode, `${where} is a hard link`).toBe(ino);
  }
}
