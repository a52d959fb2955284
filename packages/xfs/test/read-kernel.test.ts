import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeAsRoot, withLoopMount, xfsRepairCheck } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { XfsFs } from "../src/index.js";
import { type BuiltImage, buildImage, imageDir, VARIANTS } from "./images.js";
import { diffTrees, kernelTree, readerTree } from "./kernel-view.js";

const KERNEL = VARIANTS.filter((v) => v.kernel);

describeAsRoot(
  ["mkfs.xfs", "xfs_io", "xfs_repair", "getfattr", "setfattr", "losetup"],
  "XfsFs against the kernel",
  () => {
    let dir: string;
    const images = new Map<string, BuiltImage>();
    beforeAll(async () => {
      dir = await imageDir();
      for (const v of KERNEL) images.set(v.name, await buildImage(v, dir));
    });

    for (const v of KERNEL) {
      it(`${v.name}: every path, stat field (ns times), content, link target and xattr matches a read-only mount`, async () => {
        const img = images.get(v.name) as BuiltImage;
        expect((await xfsRepairCheck(img.path)).clean).toBe(true);
        const mnt = join(dir, `${v.name}.ro`);
        await mkdir(mnt, { recursive: true });
        const kernel = await withLoopMount(img.path, mnt, {}, (m) => kernelTree(m));
        const dev = await FileDevice.open(img.path, { readOnly: true });
        try {
          const fs = await XfsFs.open(dev);
          expect(fs.logState().state).toBe("clean");
          const ours = await readerTree(fs);
          expect(diffTrees(kernel, ours)).toEqual([]);
          // The forms the fixtures are meant to cover really are there.
          expect(kernel.size).toBeGreaterThan(6400);
          expect(kernel.get("/k/xa-remote")?.xattrs["user.big"]?.length).toBe(40000);
          expect(kernel.get("/k/acl")?.xattrs["system.posix_acl_access"]).toBeDefined();
          const form = async (p: string) => fs.dirForm(await fs.readInode((await fs.lstat(p)).ino));
          const aform = async (p: string) => fs.attrForm(await fs.readInode((await fs.lstat(p)).ino));
          expect(await form("/k/sf")).toBe("shortform");
          expect(await form("/k/block")).toBe("block");
          expect(await form("/k/leaf")).toBe(v.name === "dir64k" ? "block" : "leaf");
          expect(await form("/k/node")).toBe(v.name === "dir64k" ? "leaf" : "node");
          expect(await aform("/k/xa-sf")).toBe("shortform");
          expect(await aform("/k/xa-leaf")).toBe(v.name === "b1k" ? "node" : "leaf");
          expect(await aform("/k/xa-node")).toBe("node");
          const frag = await fs.readInode((await fs.lstat("/k/frag")).ino);
          expect(frag.format).toBe(3); // btree
          const pre = await fs.forkExtents(await fs.readInode((await fs.lstat("/k/prealloc")).ino));
          expect(pre.some((e) => e.unwritten)).toBe(true);
        } finally {
          await dev.close();
        }
      });
    }
  },
);
