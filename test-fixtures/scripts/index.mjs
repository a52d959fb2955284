#!/usr/bin/env node
// index.mjs <image-dir> <out-dir>: writes <out-dir>/fixtures.json, describing every image in
// <image-dir>. Descriptions come from the table below; everything measurable (sizes, hashes,
// features, cluster sizes, partitions) is read back with the real tools.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [imgDir, outDir] = process.argv.slice(2);
const sbin = { env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` }, maxBuffer: 1 << 26 };
const run = (cmd, args) => execFileSync(cmd, args, sbin).toString("utf8");

const EXT = (manifest, description, generatedWith) => ({
  format: "raw",
  manifest,
  description,
  generatedWith,
});
const SPEC = {
  "ext4-default.img": EXT(
    "tree-full.json.gz",
    "ext4 with the e2fsprogs 1.47 default features (metadata_csum, 64bit, flex_bg, extents, huge_file, dir_nlink, extra_isize) plus orphan_file; 4 KiB blocks; the full tree incl. a 5,100-entry htree directory",
    "mke2fs -t ext4 -b 4096 -N 8192 -O orphan_file",
  ),
  "ext4-1k.img": EXT(
    "tree-full.json.gz",
    "ext4 with the Debian 1.47 defaults and 1 KiB blocks (deeper htree, more groups); full tree",
    "mke2fs -t ext4 -b 1024 -N 8192",
  ),
  "ext4-nocsum.img": EXT(
    "tree-small.json.gz",
    "ext4 without metadata_csum and without 64bit: uninit_bg (gdt_csum) group checksums, 32-byte group descriptors; small tree",
    "mke2fs -t ext4 -O ^metadata_csum,^64bit,uninit_bg",
  ),
  "ext4-inline.img": EXT(
    "tree-small.json.gz",
    "ext4 with inline_data (small files, symlinks and directories stored in the inode); small tree",
    "mke2fs -t ext4 -O inline_data",
  ),
  "ext3.img": EXT(
    "tree-small.json.gz",
    "ext3: journal, block maps (direct/indirect/double-indirect), no extents; 1 KiB blocks; small tree",
    "mke2fs -t ext3 -b 1024 -I 256",
  ),
  "ext2.img": EXT(
    "tree-small.json.gz",
    "ext2: no journal, block maps, 128-byte inodes (second-resolution 32-bit times, no crtime); 4 KiB blocks; small tree",
    "mke2fs -t ext2 -b 4096 -I 128",
  ),
  "pattern.raw": {
    format: "raw",
    content: "pattern",
    description:
      "4 MiB raw disk: every 512-byte sector starts with 'imgpatch sector NNNNNNNN' (absolute sector number) followed by fixed filler; zero holes at [1 MiB, 2 MiB) and [2.5 MiB, 3.5 MiB)",
    generatedWith: "scripts/pattern.mjs sectors + dd",
  },
  "pattern-v3.qcow2": {
    format: "qcow2",
    content: "pattern",
    sameContentAs: "pattern.raw",
    description: "pattern.raw as qcow2 v3 (compat=1.1), 64 KiB clusters",
    generatedWith: "qemu-img convert -o compat=1.1,cluster_size=65536",
  },
  "pattern-v2.qcow2": {
    format: "qcow2",
    content: "pattern",
    sameContentAs: "pattern.raw",
    description: "pattern.raw as qcow2 v2 (compat=0.10), 64 KiB clusters",
    generatedWith: "qemu-img convert -o compat=0.10",
  },
  "pattern-512.qcow2": {
    format: "qcow2",
    content: "pattern",
    sameContentAs: "pattern.raw",
    description: "pattern.raw as qcow2 v3 with 512-byte clusters (smallest: 64-entry L2 tables)",
    generatedWith: "qemu-img convert -o cluster_size=512",
  },
  "pattern-2m.qcow2": {
    format: "qcow2",
    content: "pattern",
    sameContentAs: "pattern.raw",
    description: "pattern.raw as qcow2 v3 with 2 MiB clusters (largest)",
    generatedWith: "qemu-img convert -o cluster_size=2M",
  },
  "pattern-compressed.qcow2": {
    format: "qcow2",
    content: "pattern",
    sameContentAs: "pattern.raw",
    description: "pattern.raw as qcow2 v3 with every data cluster deflate-compressed",
    generatedWith: "qemu-img convert -c",
  },
  "pattern-refcount1.qcow2": {
    format: "qcow2",
    content: "pattern",
    sameContentAs: "pattern.raw",
    description: "pattern.raw as qcow2 v3 with 1-bit refcounts",
    generatedWith: "qemu-img convert -o refcount_bits=1",
  },
  "pattern-zero.qcow2": {
    format: "qcow2",
    content: "pattern",
    description:
      "pattern-v3.qcow2 after qemu-io 'write -z 64k 128k' (zero flag, allocation kept), 'write -z -u 2M 128k' (zero flag, unmapped) and 'write -z 3600k 3k' (zeros written into a data cluster)",
    generatedWith: "qemu-io write -z",
    zeroRanges: [
      [65536, 131072],
      [2097152, 131072],
      [3686400, 3072],
    ],
  },
  "pattern-extl2.qcow2": {
    format: "qcow2",
    content: "pattern",
    description:
      "pattern.raw as qcow2 v3 with extended_l2 (32 x 2 KiB subclusters per 64 KiB cluster), then qemu-io 'write -P 0xe1 1090k 2k', 'write -z 8k 4k', 'write -P 0xe2 2600k 6k'",
    generatedWith: "qemu-img convert -o extended_l2=on + qemu-io",
  },
  "overlay.qcow2": {
    format: "qcow2",
    content: "pattern",
    backing: { recorded: "pattern-v3.qcow2", fixture: "pattern-v3.qcow2" },
    description:
      "overlay on pattern-v3.qcow2 named by a RELATIVE path, after qemu-io 'write -P 0xcc 512k 64k', 'write -P 0xdd 1500k 4k', 'write -z 3584k 64k', 'write -P 0xee 4190208 4096'",
    generatedWith: "qemu-img create -b pattern-v3.qcow2 -F qcow2 + qemu-io",
  },
  "pattern-snapshot.qcow2": {
    format: "qcow2",
    content: "pattern",
    description:
      "pattern-v3.qcow2 with an internal snapshot 'snap1' (whose content is pattern.raw), then qemu-io 'write -P 0x5e 0 64k', 'write -P 0x5f 1M 4k' (copy-on-write of shared clusters); snapshot date pinned",
    generatedWith: "qemu-img snapshot -c + qemu-io + scripts/qcow2-patch.mjs snapshot-times",
  },
  "broken-leak.qcow2": {
    format: "qcow2",
    content: "pattern",
    broken: true,
    description:
      "pattern-v3.qcow2 with the L2 entry of guest offset 64 KiB cleared: that guest cluster reads as zeros and its host cluster is leaked (qemu-img check: 1 leak, exit 3)",
    generatedWith: "scripts/qcow2-patch.mjs drop-l2",
  },
  "broken-refcount.qcow2": {
    format: "qcow2",
    content: "pattern",
    broken: true,
    description:
      "pattern-v3.qcow2 with the refcount of the host cluster holding guest offset 128 KiB set to 0 while still mapped (qemu-img check: 1 corruption, exit 2); content unchanged",
    generatedWith: "scripts/qcow2-patch.mjs zero-refcount",
  },
  "ext4-overlay.qcow2": {
    format: "qcow2",
    manifest: "tree-full.json.gz",
    backing: { recorded: "ext4-default.qcow2", fixture: "ext4-default.qcow2" },
    description:
      "overlay on ext4-default.qcow2 (relative path) holding only the 4 KiB blocks debugfs changed: /lost+found/overlay-note.txt added (uid/gid 1000) and the atime of /small.txt moved; the manifest still describes everything outside lost+found",
    generatedWith:
      "debugfs -w on a copy + qemu-img create -b ext4-default.qcow2 + qemu-io write -s of the differing 4 KiB blocks",
    extraFiles: [
      {
        path: "/lost+found/overlay-note.txt",
        uid: 1000,
        gid: 1000,
        mode: 0o100644,
        text: "written into the overlay by debugfs\n",
      },
    ],
  },
  "ext4-default.qcow2": {
    format: "qcow2",
    manifest: "tree-full.json.gz",
    sameContentAs: "ext4-default.img",
    description: "ext4-default.img as qcow2 v3, 64 KiB clusters",
    generatedWith: "qemu-img convert",
  },
  "ext4-inline-v2-compressed.qcow2": {
    format: "qcow2",
    manifest: "tree-small.json.gz",
    sameContentAs: "ext4-inline.img",
    description: "ext4-inline.img as compressed qcow2 v2",
    generatedWith: "qemu-img convert -c -o compat=0.10",
  },
  "disk-gpt.img": {
    format: "raw",
    content: "gpt",
    sfdiskJson: "disk-gpt.sfdisk.json",
    description:
      "40 MiB GPT disk like a cloud image: p1 BIOS boot (1 MiB), p2 EFI System (vfat, 16 MiB), p3 Linux root x86-64 (ext4, small tree)",
    generatedWith: "sfdisk + mkfs.vfat + mke2fs -d + dd conv=notrunc",
    partitionContent: {
      1: { content: "bios-boot" },
      2: { content: "vfat" },
      3: { content: "ext4", manifest: "tree-small.json.gz" },
    },
  },
  "disk-gpt.qcow2": {
    format: "qcow2",
    content: "gpt",
    sameContentAs: "disk-gpt.img",
    sfdiskJson: "disk-gpt.sfdisk.json",
    description: "disk-gpt.img as qcow2 v3",
    generatedWith: "qemu-img convert",
    partitionsFrom: "disk-gpt.img",
  },
  "disk-gpt-4k.img": {
    format: "raw",
    content: "gpt",
    sfdiskScript: "disk-gpt-4k.sfdisk",
    description:
      "24 MiB GPT disk with 4 KiB logical sectors (made with fdisk -b 4096): p1 EFI System (vfat, 4 KiB sectors), p2 Linux filesystem (ext4, 4 KiB blocks, small tree)",
    generatedWith: "fdisk -b 4096 (sfdisk script via 'I') + mkfs.vfat -S 4096 + mke2fs -d + dd conv=notrunc",
    partitionContent: { 1: { content: "vfat" }, 2: { content: "ext4", manifest: "tree-small.json.gz" } },
  },
  "disk-mbr.img": {
    format: "raw",
    content: "mbr",
    sfdiskJson: "disk-mbr.sfdisk.json",
    description:
      "40 MiB MBR disk: p1 primary ext4 (bootable, small tree), p2 extended holding p5 logical ext2 (1 KiB blocks, 128-byte inodes, small tree) and p6 logical swap, p3 primary FAT (type 0c)",
    generatedWith: "sfdisk + mke2fs -d + mkswap + mkfs.vfat + dd conv=notrunc",
    partitionContent: {
      1: { content: "ext4", manifest: "tree-small.json.gz" },
      2: { content: "extended" },
      3: { content: "vfat" },
      5: { content: "ext2", manifest: "tree-small.json.gz" },
      6: { content: "swap" },
    },
  },
};

const sha256File = (p) => createHash("sha256").update(readFileSync(p)).digest("hex");

function extInfo(path, offset = 0) {
  const spec = offset ? `${path}?offset=${offset}` : path;
  const out = run("dumpe2fs", ["-h", spec]);
  const f = {};
  for (const line of out.split("\n")) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (m) f[m[1].trim()] = m[2].trim();
  }
  const features = f["Filesystem features"].split(/\s+/).filter(Boolean);
  const type =
    features.includes("extent") || features.includes("flex_bg") || features.includes("inline_data")
      ? "ext4"
      : features.includes("has_journal")
        ? "ext3"
        : "ext2";
  return {
    type,
    features,
    blockSize: Number(f["Block size"]),
    inodeSize: Number(f["Inode size"]),
    uuid: f["Filesystem UUID"],
    label: f["Filesystem volume name"],
  };
}

// The partition table as fdisk's sfdisk-format dump describes it (for 4 KiB-sector disks, which
// sfdisk --json would read with 512-byte sectors).
function tableFromScript(scriptPath) {
  const text = readFileSync(scriptPath, "utf8");
  const sectorsize = Number(/^sector-size: (\d+)$/m.exec(text)?.[1] ?? 512);
  const partitions = [];
  for (const line of text.split("\n")) {
    const m = /^(\S+) : (.*)$/.exec(line);
    if (!m) continue;
    const f = Object.fromEntries(m[2].split(/,\s*/).map((kv) => kv.split("=").map((x) => x.trim())));
    partitions.push({
      node: m[1],
      start: Number(f.start),
      size: Number(f.size),
      type: f.type,
      uuid: f.uuid,
      name: f.name?.replace(/^"|"$/g, ""),
    });
  }
  return { sectorsize, partitions };
}

function partitions(path, contents, scriptPath) {
  const j = scriptPath
    ? tableFromScript(scriptPath)
    : JSON.parse(run("sfdisk", ["--json", path])).partitiontable;
  const sector = j.sectorsize ?? 512;
  return j.partitions.map((p) => {
    const number = Number(/(\d+)$/.exec(p.node)[1]);
    const c = contents[number] ?? { content: "unknown" };
    const part = {
      number,
      offset: p.start * sector,
      size: p.size * sector,
      type: p.type,
      content: c.content,
    };
    if (p.name) part.name = p.name;
    if (p.uuid) part.uuid = p.uuid;
    if (c.manifest) part.manifest = c.manifest;
    if (/^ext[234]$/.test(c.content)) {
      const e = extInfo(path, part.offset);
      if (e.type !== c.content)
        throw new Error(`${path} p${number}: expected ${c.content}, dumpe2fs says ${e.type}`);
      Object.assign(part, {
        features: e.features,
        blockSize: e.blockSize,
        inodeSize: e.inodeSize,
        uuid: part.uuid,
        fsUuid: e.uuid,
      });
    }
    return part;
  });
}

const tmp = mkdtempSync(join(tmpdir(), "imgpatch-index-"));
process.on("exit", () => rmSync(tmp, { recursive: true, force: true }));
const fixtures = {};
const names = readdirSync(imgDir).sort();
for (const name of Object.keys(SPEC))
  if (!names.includes(name)) throw new Error(`spec names ${name}, not generated`);
for (const name of names) {
  const spec = SPEC[name];
  if (!spec) throw new Error(`generated ${name} has no description in index.mjs`);
  const path = join(imgDir, name);
  const info = JSON.parse(run("qemu-img", ["info", "--output=json", "-f", spec.format, path]));
  const e = {
    name,
    file: `${name}.gz`,
    format: spec.format,
    content: spec.content,
    description: spec.description,
  };
  e.virtualSize = info["virtual-size"];
  e.size = statSync(path).size;
  e.sha256 = sha256File(path);
  // Guest-visible content (what a reader must return), via qemu-img's own reader.
  const flat = join(tmp, "flat.raw");
  if (spec.format === "raw") e.contentSha256 = e.sha256;
  else {
    execFileSync("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", path, flat], { cwd: imgDir });
    e.contentSha256 = sha256File(flat);
    const d = info["format-specific"].data;
    e.qcow2 = {
      compat: d.compat,
      clusterSize: info["cluster-size"],
      refcountBits: d["refcount-bits"],
      extendedL2: d["extended-l2"] ?? false,
      compressed: /convert -c/.test(spec.generatedWith),
      zeroClusters: /write -z/.test(spec.generatedWith),
    };
    // qemu-img check's verdict (exit 0 clean, 2 corruptions, 3 leaks)
    let exitCode = 0;
    let out;
    try {
      out = execFileSync("qemu-img", ["check", "--output=json", path], { cwd: imgDir });
    } catch (err) {
      exitCode = err.status;
      out = err.stdout;
    }
    const c = JSON.parse(out.toString("utf8"));
    e.qemuCheck = { exitCode, leaks: c.leaks ?? 0, corruptions: c.corruptions ?? 0 };
    const clean = exitCode === 0 && !c.leaks && !c.corruptions;
    if (clean === Boolean(spec.broken))
      throw new Error(`${name}: qemu-img check says ${JSON.stringify(c)}, exit ${exitCode}`);
    if (info.snapshots) {
      e.snapshots = info.snapshots.map((sn) => {
        const snapFlat = join(tmp, "snap.raw");
        execFileSync(
          "qemu-img",
          ["convert", "-f", "qcow2", "-O", "raw", "-l", `snapshot.name=${sn.name}`, path, snapFlat],
          { cwd: imgDir },
        );
        const r = { id: sn.id, name: sn.name, contentSha256: sha256File(snapFlat) };
        rmSync(snapFlat);
        return r;
      });
    }
  }
  if (spec.manifest) {
    const source = spec.format === "raw" ? path : flat;
    const x = extInfo(source);
    Object.assign(e, {
      content: x.type,
      fsOffset: 0,
      features: x.features,
      blockSize: x.blockSize,
      inodeSize: x.inodeSize,
      fsUuid: x.uuid,
      manifest: spec.manifest,
    });
  }
  rmSync(flat, { force: true });
  if (spec.partitionContent || spec.partitionsFrom) {
    const from = spec.partitionsFrom ?? name;
    const script = SPEC[from].sfdiskScript ? join(outDir, SPEC[from].sfdiskScript) : undefined;
    e.partitions = partitions(join(imgDir, from), SPEC[from].partitionContent, script);
    if (spec.sfdiskJson) e.sfdiskJson = spec.sfdiskJson;
    if (spec.sfdiskScript) e.sfdiskScript = spec.sfdiskScript;
    e.sectorSize = script ? tableFromScript(script).sectorsize : 512;
  }
  for (const k of ["backing", "sameContentAs", "zeroRanges", "extraFiles", "broken", "generatedWith"])
    if (spec[k] !== undefined) e[k] = spec[k];
  if (spec.sameContentAs) {
    const other = join(imgDir, spec.sameContentAs);
    if (sha256File(other) !== e.contentSha256)
      throw new Error(`${name}: content differs from ${spec.sameContentAs}`);
  }
  fixtures[name] = e;
}
rmSync(tmp, { recursive: true, force: true });
writeFileSync(join(outDir, "fixtures.json"), `${JSON.stringify({ version: 1, fixtures }, null, 2)}\n`);
