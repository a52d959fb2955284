/**
 * Attribute forks with more leaves than one dabtree node indexes: on 1 KiB blocks a node holds
 * 120 (v5) or 126 (v4) entries and a leaf two of these attributes, so 300 attributes need a
 * two-level dabtree (shared layout code with directories, da-btree-write.ts). Then every
 * attribute goes and the fork with it.
 *
 * Oracles: `xfs_repair -n` clean after each stage, `xfs_db -r` (fork format, the root's level,
 * the fork offset once empty, `check`), our reader, and as root the kernel's getfattr through a
 * read-only loop mount (this kernel refuses v4: there xfs_repair and xfs_db judge).
 */
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { FileDevice } from "@imgpatch/disk";
import { describeWithTools, isRoot, mkfsXfs, withLoopMount, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/index.js";
import { imageDir, pseudoBytes, V4_ARGS } from "./images.js";

const run = promisify(execFile);

const SETS: [string, string[], boolean][] = [
  ["v5 1 KiB blocks", ["-b", "size=1024"], true],
  ["v4 1 KiB blocks", [...V4_ARGS, "-b", "size=1024"], false],
];

const COUNT = 300;
const nameOf = (i: number) => `user.${i.toString(36)}-${"n".repeat(150 + (i % 40))}`;
const attrValue = (i: number) => pseudoBytes(100 + ((i * 13) % 120), i + 1);

async function dbField(img: string, cmds: string[], field: string): Promise<string> {
  const out = await xfsDb(img, [...cmds, `print ${field}`]);
  const m = new RegExp(`^${field.replace(/\./g, "\\.")} = (.*)$`, "m").exec(out);
  if (!m) throw new Error(`xfs_db printed no ${field}: ${out}`);
  return m[1];
}

/** The kernel's user.* attributes of /f as name → hex, or undefined where it cannot run. */
async function kernelAttrs(img: string, dir: string): Promise<Map<string, string> | undefined> {
  if (!isRoot()) return undefined;
  const mnt = join(dir, "mnt");
  await mkdir(mnt, { recursive: true });
  try {
    return await withLoopMount(img, mnt, {}, async (m) => {
      const { stdout } = await run(
        "getfattr",
        ["-d", "-m", "^user\\.", "-e", "hex", "--absolute-names", join(m, "f")],
        {
          maxBuffer: 1 << 26,
        },
      );
      const out = new Map<string, string>();
      for (const line of stdout.split("\n")) {
        const i = line.indexOf("=");
        if (i > 0 && !line.startsWith("#")) out.set(line.slice(0, i), line.slice(i + 3));
      }
      return out;
    });
  } catch (e) {
    if (String(e).includes("wrong fs type")) return undefined;
    throw e;
  }
}

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "attribute dabtree beyond one node", () => {
  for (const [set, args, kernel] of SETS) {
    it(`${set}: ${COUNT} attributes under a two-level dabtree, then none and no fork`, async () => {
      const dir = await imageDir();
      const img = join(dir, "attrs.img");
      const src = join(dir, "content");
      await (await import("node:fs/promises")).writeFile(src, "content\n");
      await mkfsXfs(img, {
        size: 128 << 20,
        args,
        proto: { type: "dir", entries: { f: { type: "file", source: src, mode: 0o644 } } },
      });
      const dev = await FileDevice.open(img);
      try {
        const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        for (let i = 0; i < COUNT; i++) await ed.setxattr("/f", nameOf(i), attrValue(i));
        const ino = (await ed.fs.stat("/f")).ino;
        expect(await ed.fs.attrForm(await ed.fs.readInode(ino))).toBe("node");
        await ed.close();
        await dev.flush();
        const r = await xfsRepairCheck(img);
        expect(r.clean, r.output).toBe(true);
        const at = [`inode ${ino}`];
        // Leaves and nodes are added one by one as the tree grows: the mapping may outgrow the inode.
        expect(["2 (extents)", "3 (btree)"]).toContain(await dbField(img, at, "core.aformat"));
        expect(Number(await dbField(img, [...at, "ablock 0"], "hdr.level"))).toBe(2);
        expect((await xfsDb(img, ["check"])).trim()).toBe("");

        const want = new Map<string, string>();
        for (let i = 0; i < COUNT; i++) want.set(nameOf(i), attrValue(i).toString("hex"));
        const ed2 = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        const ours = new Map<string, string>();
        for (const [k, v] of await ed2.fs.inodeXattrs(await ed2.fs.readInode(ino)))
          if (k.startsWith("user.")) ours.set(k, Buffer.from(v).toString("hex"));
        expect([...ours].sort()).toEqual([...want].sort());
        await ed2.close();
        const k = kernel ? await kernelAttrs(img, dir) : undefined;
        if (k) expect([...k].sort()).toEqual([...want].sort());

        // Everything goes: node → leaf → short form → no attribute fork at all.
        const ed3 = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
        const forms = new Set<string>();
        for (let i = COUNT - 1; i >= 0; i--) {
          await ed3.removexattr("/f", nameOf(i));
          forms.add(await ed3.fs.attrForm(await ed3.fs.readInode(ino)));
        }
        expect([...forms]).toEqual(expect.arrayContaining(["node", "leaf"]));
        await ed3.close();
        await dev.flush();
        const r2 = await xfsRepairCheck(img);
        expect(r2.clean, r2.output).toBe(true);
        expect(await dbField(img, at, "core.forkoff")).toBe("0");
        expect(await dbField(img, at, "core.naextents")).toBe("0");
        expect((await xfsDb(img, ["check"])).trim()).toBe("");
      } finally {
        await dev.close();
      }
    }, 600_000);
  }
});
