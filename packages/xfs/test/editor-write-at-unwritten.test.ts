// XfsEditor.writeAt into preallocated (unwritten) extents. Fixtures: the kernel makes the
// unwritten extents (`xfs_io -c falloc` through a read-write loop mount, as root; mkfs.xfs -p
// cannot make them): one 1 MiB extent, written data followed by preallocated space, 40 small
// preallocations with holes between (a bmbt data fork), and a preallocation past EOF (falloc
// -k). Writes split extents into unwritten head / written middle / unwritten tail, merge with
// written neighbours, fill holes between them, and grow the size.
// Oracles: per file block, xfs_db's `bmap` flag (written, unwritten, hole) equals the model;
// xfs_repair -n and xfs_db check clean (on rmapbt sets they compare the rmap records, unwritten
// flag included, with the bmbt); the kernel reads every byte back through a read-only mount.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeAsRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/editor.js";
import { pattern } from "./images.js";
import { dbFields, FEATURE_SETS, fsCheck, mkfsImage, XFS_TOOLS, xfsDb } from "./space-helpers.js";

/** Per file block: "W" written, "U" unwritten (xfs_db bmap "flag 1"); unmapped blocks absent. */
function blockStates(img: string, file: string): Map<number, string> {
  const out = xfsDb(img, [`path ${file}`, "bmap"]);
  const m = new Map<number, string>();
  for (const x of out.matchAll(/offset (\d+) startblock \d+ \(\d+\/\d+\) count (\d+) flag (\d)/g))
    for (let k = 0; k < Number(x[2]); k++) m.set(Number(x[1]) + k, x[3] === "1" ? "U" : "W");
  return m;
}

interface FileModel {
  bytes: Uint8Array;
  states: Map<number, string>;
}

const SETS = ["v5", "v5-rmap-reflink", "v5-1k"];

describeAsRoot([...XFS_TOOLS, "xfs_io"], "XfsEditor.writeAt into unwritten extents", () => {
  for (const set of SETS) {
    it(`${set}: split, merge, fill holes, grow; bmap flags, xfs_repair -n, kernel read-back`, async () => {
      const dir = await tempDir("xfs-writeat-unwritten-");
      const img = mkfsImage(dir, "u.img", FEATURE_SETS[set], 64);
      const bs = Number(dbFields(xfsDb(img, ["sb 0", "print blocksize"])).get("blocksize"));
      const mnt = join(dir, "mnt");
      mkdirSync(mnt);
      const frag = Array.from({ length: 40 }, (_, i) => `-c "falloc ${i * 2 * bs} ${bs}"`).join(" ");
      await withLoopMount(img, mnt, { rw: true }, async (m) => {
        execFileSync("sh", [
          "-c",
          [
            `xfs_io -f -c "falloc 0 1m" ${m}/pre`,
            `xfs_io -f -c "pwrite -S 0x61 0 64k" -c fsync -c "falloc 64k 448k" ${m}/mixed`,
            `xfs_io -f ${frag} ${m}/frag`,
            `xfs_io -f -c "falloc -k 0 256k" ${m}/keep`,
          ].join(" && "),
        ]);
      });
      expect(fsCheck(img).clean).toBe(true);
      const files = ["/pre", "/mixed", "/frag", "/keep"];
      const model = new Map<string, FileModel>();
      for (const f of files) {
        const size = Number(dbFields(xfsDb(img, [`path ${f}`, "print core.size"])).get("core.size"));
        const bytes = new Uint8Array(size);
        if (f === "/mixed") bytes.fill(0x61, 0, 65536);
        model.set(f, { bytes, states: blockStates(img, f) });
      }
      expect([...(model.get("/pre")?.states.values() ?? [])].every((s) => s === "U")).toBe(true);
      expect(xfsDb(img, ["path /frag", "print core.format"])).toContain("3 (btree)");

      const writes: [string, number, number][] = [
        ["/pre", 5000, 10], // inside: unwritten head, written middle, unwritten tail
        ["/pre", 0, 100], // head block: merges with the middle when adjacent
        ["/pre", (1 << 20) - 50, 50], // the last block
        ["/pre", (1 << 20) - 10, 3 * bs], // over the end: a new block past the extent
        ["/mixed", 65536, bs + 7], // joins the written extent before it
        ["/mixed", 300_000, 2 * bs], // middle of the preallocation
        ["/frag", 100, 80 * bs - 200], // every preallocation and every hole between them
        ["/keep", 0, 5000], // preallocated past EOF: the size grows to 5000
      ];
      const dev = await FileDevice.open(img, { readOnly: false });
      try {
        for (const [i, [f, off, len]] of writes.entries()) {
          const ed = await XfsEditor.open(dev, { timestamp: 7 });
          const data = pattern(len, i + 1);
          await ed.writeAt(f, off, data);
          const fm = model.get(f);
          if (!fm) throw new Error(f);
          const grown = new Uint8Array(Math.max(fm.bytes.length, off + len));
          grown.set(fm.bytes);
          grown.set(data, off);
          fm.bytes = grown;
          for (let b = Math.floor(off / bs); b <= Math.floor((off + len - 1) / bs); b++)
            fm.states.set(b, "W");
          expect(Buffer.from(await ed.readFile(f)).equals(Buffer.from(fm.bytes)), `${f} @${off}`).toBe(true);
          await ed.close();
          await dev.flush();
          const c = fsCheck(img);
          expect(c.output, `after write ${i} to ${f}`).toBe("");
          expect(c.clean).toBe(true);
          const seen = blockStates(img, f);
          expect(
            [...seen.entries()].sort((a, b) => a[0] - b[0]),
            `bmap ${f} after write ${i}`,
          ).toEqual([...fm.states.entries()].sort((a, b) => a[0] - b[0]));
        }
      } finally {
        await dev.close();
      }
      // The split really happened: /pre holds written and unwritten extents side by side.
      const pre = [...(model.get("/pre")?.states.values() ?? [])];
      expect(pre.includes("U") && pre.includes("W")).toBe(true);
      // /frag's holes are filled: one block state per file block up to the end of the write.
      expect(model.get("/frag")?.states.size).toBe(80);
      await withLoopMount(img, mnt, {}, async (m) => {
        for (const f of files) {
          const got = readFileSync(join(m, f));
          expect(got.equals(Buffer.from(model.get(f)?.bytes ?? [])), `kernel ${f}`).toBe(true);
        }
      });
    }, 600_000);
  }
});
