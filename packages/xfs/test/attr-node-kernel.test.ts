/**
 * Node-form attribute forks the kernel built (setfattr through a read-write loop mount, as root),
 * changed one leaf at a time by the editor: removals, replacements (local → remote and back),
 * additions, then all but one removed (short form). The dabtree, leaves and remote values are
 * the kernel's layout, not ours, so the descent, splits, joins and frees meet a tree they did
 * not make. Oracles after each stage: `xfs_repair -n` clean, `xfs_db check` silent, our reader
 * and the kernel's `getfattr -d -m -` (read-only mount) equal the model.
 */
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { FileDevice } from "@imgpatch/disk";
import { describeAsRoot, mkfsXfs, withLoopMount, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/index.js";
import { imageDir, pseudoBytes } from "./images.js";

const exec = promisify(execFile);

const SETS: [string, string[]][] = [
  ["v5 1 KiB blocks", ["-b", "size=1024"]],
  ["v5 rmapbt", ["-m", "rmapbt=1"]],
];

async function kernelAttrs(img: string, mnt: string): Promise<Map<string, string>> {
  return withLoopMount(img, mnt, {}, async (m) => {
    const { stdout } = await exec("getfattr", ["-d", "-m", "-", "-e", "hex", join(m, "k")], {
      maxBuffer: 64 << 20,
    });
    const seen = new Map<string, string>();
    for (const line of stdout.split("\n")) {
      const eq = line.indexOf("=0x");
      if (eq > 0) seen.set(line.slice(0, eq), line.slice(eq + 3));
    }
    return seen;
  });
}

describeAsRoot(
  ["mkfs.xfs", "xfs_db", "xfs_repair", "setfattr", "getfattr"],
  "kernel-made node-form attributes edited in place",
  () => {
    for (const [name, args] of SETS) {
      it(`${name}: remove, replace, add, shrink to short form`, { timeout: 600_000 }, async () => {
        const dir = await imageDir();
        const img = join(dir, "attr-kernel.img");
        const mnt = join(dir, "mnt");
        await mkdir(mnt, { recursive: true });
        await mkfsXfs(img, { size: 64 << 20, args, proto: { type: "dir", entries: {} } });
        const model = new Map<string, Buffer>();
        for (let i = 1; i <= 500; i++) model.set(`user.node-attribute-${i}`, Buffer.from(`value-${i}`));
        for (let i = 1; i <= 6; i++) model.set(`user.remote-${i}`, pseudoBytes(3000 + i, i));
        await withLoopMount(img, mnt, { rw: true }, async (m) => {
          const script = [
            `: > ${m}/k`,
            `for i in $(seq 1 500); do setfattr -n user.node-attribute-$i -v value-$i ${m}/k; done`,
            ...[1, 2, 3, 4, 5, 6].map(
              (i) => `setfattr -n user.remote-${i} -v 0x${pseudoBytes(3000 + i, i).toString("hex")} ${m}/k`,
            ),
          ].join("\n");
          await exec("sh", ["-c", script], { maxBuffer: 16 << 20 });
        });
        const dev = await FileDevice.open(img);
        const check = async (stage: string, form: string) => {
          await dev.flush();
          const r = await xfsRepairCheck(img);
          expect(r.clean, `${stage}: ${r.output}`).toBe(true);
          expect((await xfsDb(img, ["check"])).trim(), stage).toBe("");
          const ed = await XfsEditor.open(dev);
          try {
            expect(await ed.fs.attrForm(await ed.fs.readInode((await ed.fs.stat("/k")).ino)), stage).toBe(
              form,
            );
            expect((await ed.fs.listxattr("/k")).sort(), stage).toEqual([...model.keys()].sort());
            for (const [n, v] of model)
              expect(Buffer.from(await ed.fs.getxattr("/k", n)).equals(v), `${stage} ${n}`).toBe(true);
          } finally {
            await ed.close();
          }
          const seen = await kernelAttrs(img, mnt);
          expect([...seen.keys()].sort(), stage).toEqual([...model.keys()].sort());
          for (const [n, v] of model) expect(seen.get(n), `${stage} kernel ${n}`).toBe(v.toString("hex"));
        };
        try {
          await check("kernel-made", "node");
          const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
          for (let i = 1; i <= 500; i++) {
            const n = `user.node-attribute-${i}`;
            if (i % 3 === 0) {
              await ed.removexattr("/k", n);
              model.delete(n);
            } else if (i % 5 === 0) {
              const v = i % 10 === 0 ? pseudoBytes(2000, i) : pseudoBytes(400, i);
              await ed.setxattr("/k", n, v);
              model.set(n, v);
            }
          }
          await ed.removexattr("/k", "user.remote-2");
          model.delete("user.remote-2");
          await ed.setxattr("/k", "user.remote-3", Buffer.from("small now"));
          model.set("user.remote-3", Buffer.from("small now"));
          for (let i = 0; i < 200; i++) {
            const v = pseudoBytes(i % 4 === 0 ? 1500 : 40, 7000 + i);
            await ed.setxattr("/k", `user.added-${i}`, v);
            model.set(`user.added-${i}`, v);
          }
          await ed.close();
          await check("edited", "node");
          const ed2 = await XfsEditor.open(dev, { timestamp: 1_700_000_000 });
          for (const n of [...model.keys()]) {
            if (n === "user.node-attribute-1") continue;
            await ed2.removexattr("/k", n);
            model.delete(n);
          }
          await ed2.close();
          await check("shrunk", "shortform");
        } finally {
          await dev.close();
        }
      });
    }
  },
);
