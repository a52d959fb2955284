// XfsEditor.writeAt into reflink-shared blocks: copy-on-write. Fixtures made by the kernel (as
// root, read-write loop mount on v5 rmapbt+reflink): /a, and /b and /c reflinked from it (every
// block referenced three times); /d, with one 16 KiB range of it reflinked into /e (shared in
// part). Writes: into a shared block of a three-way extent, across several, over all of /c, into
// /d's shared range and its private blocks in one call, and again into a block /a no longer
// shares (written in place). After each: every file's bytes through our reader equal the model,
// and xfs_repair -n + xfs_db check are clean — xfs_repair rebuilds the reference counts from the
// reverse map and compares them with the refcount btree, so a wrong decrement, a record left at
// refcount 1 or an unmerged pair fails it. Then a shared file is replaced and another removed:
// their shared blocks lose a reference instead of being freed, and the refcount btree ends empty.
// At the end the kernel reads every file back.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeAsRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/editor.js";
import { pattern } from "./images.js";
import { FEATURE_SETS, fsCheck, mkfsImage, XFS_TOOLS, xfsDb } from "./space-helpers.js";

/** Reference-count records of AG 0 as xfs_db prints them ("startblock,blockcount,refcount"). */
function refcountRecords(img: string): string {
  return xfsDb(img, ["agf 0", "addr refcntroot", "print recs"]);
}

describeAsRoot(
  [...XFS_TOOLS, "xfs_io"],
  "XfsEditor.writeAt into reflink-shared blocks (copy-on-write)",
  () => {
    it("v5 rmapbt+reflink: shared blocks copied or released by reference, private ones in place", async () => {
      const dir = await tempDir("xfs-writeat-cow-");
      const img = mkfsImage(dir, "c.img", FEATURE_SETS["v5-rmap-reflink"], 64);
      const mnt = join(dir, "mnt");
      mkdirSync(mnt);
      const model = new Map<string, Uint8Array>();
      await withLoopMount(img, mnt, { rw: true }, async (m) => {
        execFileSync("sh", [
          "-c",
          [
            `head -c 262144 /dev/urandom > ${m}/a`,
            `cp --reflink=always ${m}/a ${m}/b`,
            `cp --reflink=always ${m}/a ${m}/c`,
            `head -c 65536 /dev/urandom > ${m}/d`,
            `xfs_io -f -c "reflink ${m}/d 16384 0 16384" ${m}/e`,
            `head -c 65536 /dev/urandom > ${m}/f`,
            `cp --reflink=always ${m}/f ${m}/g`,
            "sync",
          ].join(" && "),
        ]);
        for (const f of ["a", "b", "c", "d", "e", "f", "g"])
          model.set(`/${f}`, new Uint8Array(readFileSync(join(m, f))));
      });
      expect(fsCheck(img).clean).toBe(true);
      const shared = refcountRecords(img);
      expect(shared).toMatch(/\[\d+,\d+,3,0\]/); // a three-way shared extent to start from
      const bs = 4096;
      const writes: [string, number, number][] = [
        ["/a", 100, 10], // one block of a refcount-3 extent
        ["/b", 5000, 3 * bs], // several blocks, some still shared three ways, some two
        ["/c", 0, 262144], // all of /c
        ["/d", 20000, 20000], // /d's shared range (with /e) and its private blocks after it
        ["/a", 120, 5], // /a's block 0 is its own now: in place
      ];
      const dev = await FileDevice.open(img, { readOnly: false });
      try {
        for (const [i, [f, off, len]] of writes.entries()) {
          const ed = await XfsEditor.open(dev, { timestamp: 9 });
          const data = pattern(len, i + 1);
          await ed.writeAt(f, off, data);
          const cur = model.get(f) as Uint8Array;
          const next = new Uint8Array(Math.max(cur.length, off + len));
          next.set(cur);
          next.set(data, off);
          model.set(f, next);
          for (const [p, want] of model)
            expect(Buffer.from(await ed.readFile(p)).equals(Buffer.from(want)), `${p} after write ${i}`).toBe(
              true,
            );
          await ed.close();
          await dev.flush();
          const c = fsCheck(img);
          expect(c.output, `after write ${i} to ${f}`).toBe("");
          expect(c.clean).toBe(true);
        }
      } finally {
        await dev.close();
      }
      // /c no longer shares anything: no record is left at 3.
      expect(refcountRecords(img)).not.toMatch(/\[\d+,\d+,3,0\]/);
      // Releasing shared blocks drops references instead of freeing: /g replaced (shared with /f),
      // /a removed (shared with /b). Nothing is shared after that: the refcount btree is empty.
      const dev2 = await FileDevice.open(img, { readOnly: false });
      try {
        const ed = await XfsEditor.open(dev2, { timestamp: 9 });
        const g = pattern(10000, 99);
        await ed.writeFile("/g", g);
        model.set("/g", g);
        await ed.unlink("/a");
        model.delete("/a");
        for (const [p, want] of model)
          expect(Buffer.from(await ed.readFile(p)).equals(Buffer.from(want)), `${p} after release`).toBe(
            true,
          );
        await ed.close();
        await dev2.flush();
      } finally {
        await dev2.close();
      }
      const c = fsCheck(img);
      expect(c.output, "after release").toBe("");
      expect(c.clean).toBe(true);
      expect(xfsDb(img, ["agf 0", "addr refcntroot", "print numrecs"])).toMatch(/numrecs = 0/);
      await withLoopMount(img, mnt, {}, async (m) => {
        for (const [p, want] of model)
          expect(Buffer.from(readFileSync(join(m, p))).equals(Buffer.from(want)), `kernel ${p}`).toBe(true);
      });
    }, 600_000);
  },
);
