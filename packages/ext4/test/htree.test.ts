/**
 * Directory index: hash functions against debugfs `dx_hash` (all six variants, names with
 * high-bit bytes, with and without a seed); large htree directories (built by e2fsck -D) where
 * every name is found through the index and one lookup reads O(depth) blocks.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DX_HASH, dxHash } from "@imgpatch/ext4";
import { debugfs, debugfsStat, describeWithTools, runTool, runToolOk, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { mkfs, openImage, rng } from "./helpers.js";

function uuidToSeed(uuid: string): number[] {
  const hex = uuid.replace(/-/g, "");
  const b = Buffer.from(hex, "hex");
  return [0, 1, 2, 3].map((i) => b.readUInt32LE(i * 4));
}

describeWithTools(["mke2fs", "debugfs", "e2fsck"], "htree", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("ext4-htree-");
  });

  it("dxHash equals debugfs dx_hash for every algorithm, signed and unsigned, seeded and not", async () => {
    const img = join(dir, "hash.img");
    await mkfs(img, undefined, 4, ["-t", "ext4"]);
    const r = rng(42);
    const names: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const len = 1 + Math.floor(r() * (i < 30 ? 40 : 180)); // debugfs -f reads lines of at most 256 bytes
      const b = Buffer.alloc(len);
      for (let k = 0; k < len; k++) {
        // printable ASCII (no quotes/backslash/space) or high-bit bytes, which the signed/unsigned variants treat differently
        let c = r() < 0.3 ? 0x80 + Math.floor(r() * 128) : 0x21 + Math.floor(r() * 94);
        if (c === 0x22 || c === 0x27 || c === 0x5c || c === 0x23) c = 0x41;
        b[k] = c;
      }
      b[0] = 0x6e; // never a leading '-' (getopt would take the name for an option)
      names.push(b);
    }
    const seedUuid = "8f1d2e3c-4b5a-6978-8695-a4b3c2d1e0f9";
    const cmds: Buffer[] = [];
    const expected: { name: Buffer; alg: number; seeded: boolean }[] = [];
    for (const name of names) {
      for (let alg = 0; alg <= 5; alg++) {
        for (const seeded of [false, true]) {
          cmds.push(
            Buffer.concat([
              Buffer.from(`dx_hash -h ${alg}${seeded ? ` -s ${seedUuid}` : ""} `),
              name,
              Buffer.from("\n"),
            ]),
          );
          expected.push({ name, alg, seeded });
        }
      }
    }
    const cmdFile = join(dir, "cmds");
    await writeFile(cmdFile, Buffer.concat(cmds));
    const out = (await runToolOk("debugfs", ["-f", cmdFile, img])).toString("latin1");
    const hashes = [...out.matchAll(/Hash of .* is 0x([0-9a-f]+) \(minor 0x([0-9a-f]+)\)/g)];
    expect(hashes.length).toBe(expected.length);
    const seed = uuidToSeed(seedUuid);
    expected.forEach((e, i) => {
      const ours = dxHash(e.name, e.alg, e.seeded ? seed : undefined);
      const want = { hash: Number.parseInt(hashes[i][1], 16), minor: Number.parseInt(hashes[i][2], 16) };
      expect({ alg: e.alg, name: e.name.toString("hex"), ...ours }).toEqual({
        alg: e.alg,
        name: e.name.toString("hex"),
        ...want,
      });
    });
    expect(dxHash(Buffer.from("hello"), DX_HASH.legacy, undefined).hash).toBe(0x32252546);
  });

  const cases = [
    { name: "4 KiB, half_md4", args: ["-t", "ext4"], entries: 6000, unsigned: false },
    {
      name: "1 KiB, 2-level, tea, unsigned",
      args: ["-t", "ext4", "-b", "1024", "-E", "hash_alg=tea"],
      entries: 6000,
      unsigned: true,
    },
    {
      name: "1 KiB ext3, legacy, no csum",
      args: ["-t", "ext3", "-b", "1024", "-E", "hash_alg=legacy"],
      entries: 5200,
      unsigned: false,
    },
  ];
  for (const c of cases) {
    it(`${c.name}: every name of a ${c.entries}-entry directory is found through the index`, async () => {
      const src = join(dir, `src-${c.name.replace(/\W+/g, "_")}`);
      await mkdir(join(src, "big"), { recursive: true });
      const names: string[] = [];
      for (let i = 0; i < c.entries; i++) {
        const n =
          i % 11 === 0 ? `ünïcødé-${i}-日本` : `file-${String(i).padStart(6, "0")}-${(i * 7919) % 10007}`;
        names.push(n);
        await writeFile(join(src, "big", n), "");
      }
      const img = join(dir, `${c.name.replace(/\W+/g, "_")}.img`);
      await mkfs(img, src, 64, c.args);
      if (c.unsigned) await debugfs(img, ["ssv flags 2"], { write: true });
      // e2fsck -D builds the index (mke2fs -d writes linear directories).
      const fsck = await runTool("e2fsck", ["-fyD", img]);
      expect(fsck.exitCode).toBeLessThanOrEqual(1);
      const st = await debugfsStat(img, "/big");
      expect(st.flags & 0x1000).toBe(0x1000);
      const levels = (await debugfs(img, ["htree /big"], { allowErrors: true })).match(
        /Indirect levels: (\d+)/,
      )?.[1];
      if (c.args.includes("1024") && c.entries >= 6000) expect(levels).toBe("1");

      const fs = await openImage(img);
      try {
        expect(fs.sb.flags & 2).toBe(c.unsigned ? 2 : 0);
        const listed = await fs.readdir("/big", { withFileTypes: true });
        expect(listed.length).toBe(c.entries);
        const byName = new Map(listed.map((d) => [d.name, d.ino]));
        for (const n of names) {
          const s = await fs.lstat(`/big/${n}`);
          expect(s.ino).toBe(byName.get(n));
        }
        await expect(fs.lstat("/big/not-there")).rejects.toMatchObject({ code: "ENOENT" });
      } finally {
        await fs.close();
      }
      // A cold lookup reads the dx root, one node per level, one leaf and the inode: O(log n).
      const cold = await openImage(img);
      try {
        await cold.lstat("/");
        await cold.lstat("/big");
        const before = cold.counters.metadataBlocks;
        const reads = cold.counters.reads;
        await cold.lstat(`/big/${names[Math.floor(c.entries / 2)]}`);
        const blocks = cold.counters.metadataBlocks - before;
        const itChunk = Math.max(1, Math.floor(65536 / cold.blockSize));
        // Block-mapped (ext3) directories also read the indirect block(s) on the way.
        const mapBlocks = c.args.includes("ext3") ? 2 : 0;
        expect(blocks).toBeLessThanOrEqual(Number(levels ?? 0) + 2 + itChunk + mapBlocks);
        expect(cold.counters.reads - reads).toBeLessThanOrEqual(Number(levels ?? 0) + 3 + mapBlocks);
      } finally {
        await cold.close();
      }
    });
  }
});
