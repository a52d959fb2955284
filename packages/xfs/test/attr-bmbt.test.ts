/**
 * A first attribute on files whose data fork is a bmbt (xfs_bmap_add_attrfork_btree): with a
 * small root the fork offset leaves the data fork room for it and the root is re-encoded for the
 * smaller fork; with a root too wide for the smaller fork it moves into a new bmbt block (the root
 * level goes up by one). Attributes then grow to leaf form and all go again (the fork with them).
 *
 * Oracles: `xfs_repair -n` clean after each stage, `xfs_db -r` (fork formats, fork offset, root
 * level, `check`), the file contents through our reader, and as root the kernel (content sha256
 * and getfattr through a read-only loop mount; this kernel refuses v4: xfs_repair and xfs_db
 * judge there).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, mkfsXfs, withLoopMount, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/index.js";
import { imageDir, pseudoBytes, V4_ARGS } from "./images.js";

const run = promisify(execFile);

interface BmbtCase {
  name: string;
  args: string[];
  /**
   * Extents of the narrow-root file (a few root pointers) and of the wide-root file (a full
   * level-1 root in the inode: 20 pointers in a 512 B v5 inode, 9 in a 256 B v4 one).
   */
  narrow: number;
  wide: number;
  kernel: boolean;
}

const SETS: BmbtCase[] = [
  { name: "v5 1 KiB blocks", args: ["-b", "size=1024"], narrow: 300, wide: 1160, kernel: true },
  {
    name: "v4 1 KiB blocks, 256 B inodes",
    args: [...V4_ARGS, "-b", "size=1024", "-i", "size=256"],
    narrow: 200,
    wide: 520,
    kernel: false,
  },
];

/** `n` one-block extents: every other block written, holes between. */
function sparseContent(n: number, bs: number, seed: number): Buffer {
  const out = Buffer.alloc(2 * n * bs);
  for (let i = 0; i < n; i++) pseudoBytes(bs, seed + i).copy(out, 2 * i * bs);
  return out;
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function dbField(img: string, cmds: string[], field: string): Promise<string> {
  const out = await xfsDb(img, [...cmds, `print ${field}`]);
  const m = new RegExp(`^${field.replace(/\./g, "\\.")} = (.*)$`, "m").exec(out);
  if (!m) throw new Error(`xfs_db printed no ${field}: ${out}`);
  return m[1];
}

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "first attribute beside a data-fork bmbt", () => {
  for (const set of SETS) {
    it(`${set.name}: root kept in the inode or pushed to a block; leaf form; fork removed`, async () => {
      const dir = await imageDir();
      const img = join(dir, "bmbt-attr.img");
      await mkfsXfs(img, { size: 256 << 20, args: set.args, proto: { type: "dir", entries: {} } });
      const dev = await FileDevice.open(img);
      const files = {
        "/narrow": sparseContent(set.narrow, 1024, 1),
        "/wide": sparseContent(set.wide, 1024, 9),
      };
      const inos: Record<string, number> = {};
      const levels: Record<string, number> = {};
      const check = async (stage: string) => {
        const r = await xfsRepairCheck(img);
        expect(r.clean, `${stage}: ${r.output}`).toBe(true);
        expect((await xfsDb(img, ["check"])).trim(), stage).toBe("");
        const ed = await XfsEditor.open(dev);
        for (const [p, c] of Object.entries(files))
          expect(sha(await ed.readFile(p)), `${stage} ${p}`).toBe(sha(c));
        await ed.close();
      };
      try {
        const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        for (const [p, c] of Object.entries(files)) {
          await ed.writeFile(p, c, { sparse: true });
          inos[p] = (await ed.fs.stat(p)).ino;
        }
        await ed.close();
        await dev.flush();
        for (const p of Object.keys(files)) {
          const at = [`inode ${inos[p]}`];
          expect(await dbField(img, at, "core.format"), p).toBe("3 (btree)");
          expect(await dbField(img, at, "core.forkoff"), p).toBe("0");
          levels[p] = Number(
            await dbField(img, at, "u3.bmbt.level").catch(() => dbField(img, at, "u.bmbt.level")),
          );
        }
        await check("bmbt files");

        // 1. A small attribute: short form beside the bmbt.
        const ed1 = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        for (const p of Object.keys(files)) await ed1.setxattr(p, "user.first", Buffer.from("one"));
        await ed1.close();
        await dev.flush();
        await check("first attribute");
        const after: Record<string, number> = {};
        for (const p of Object.keys(files)) {
          const at = [`inode ${inos[p]}`];
          expect(await dbField(img, at, "core.aformat"), p).toBe("1 (local)");
          expect(Number(await dbField(img, at, "core.forkoff")), p).toBeGreaterThan(0);
          after[p] = Number(
            await dbField(img, at, "u3.bmbt.level").catch(() => dbField(img, at, "u.bmbt.level")),
          );
        }
        // The narrow root stayed in the inode; the wide one moved into a block (one level more).
        expect(after["/narrow"]).toBe(levels["/narrow"]);
        expect(after["/wide"]).toBe(levels["/wide"] + 1);

        // 2. Bigger attributes: leaf form.
        const ed2 = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        for (const p of Object.keys(files))
          for (let i = 0; i < 12; i++) await ed2.setxattr(p, `user.big${i}`, pseudoBytes(60, i));
        for (const p of Object.keys(files))
          expect(await ed2.fs.attrForm(await ed2.fs.readInode(inos[p]))).toBe("leaf");
        await ed2.close();
        await dev.flush();
        await check("leaf attributes");
        if (set.kernel && isRoot()) {
          const mnt = join(dir, "mnt");
          await mkdir(mnt, { recursive: true });
          await withLoopMount(img, mnt, {}, async (m) => {
            for (const [p, c] of Object.entries(files)) {
              expect(sha(await readFile(join(m, p))), p).toBe(sha(c));
              const { stdout } = await run("getfattr", ["-d", "-m", "^user\\.", "-e", "hex", join(m, p)]);
              expect(stdout).toContain(`user.first=0x${Buffer.from("one").toString("hex")}`);
              expect(stdout).toContain(`user.big11=0x${pseudoBytes(60, 11).toString("hex")}`);
            }
          });
        }

        // 3. All attributes go: no attribute fork, the data fork's root encoded for the whole inode.
        const ed3 = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        for (const p of Object.keys(files)) {
          await ed3.removexattr(p, "user.first");
          for (let i = 0; i < 12; i++) await ed3.removexattr(p, `user.big${i}`);
        }
        await ed3.close();
        await dev.flush();
        await check("attributes removed");
        for (const p of Object.keys(files)) {
          const at = [`inode ${inos[p]}`];
          expect(await dbField(img, at, "core.forkoff"), p).toBe("0");
          expect(await dbField(img, at, "core.format"), p).toBe("3 (btree)");
        }
      } finally {
        await dev.close();
      }
    }, 600_000);
  }
});
