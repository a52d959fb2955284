// Both ways with the kernel: after the editor has made and removed files, directories, links and
// labels (allocating and freeing inode chunks, growing and shrinking the btrees), the kernel
// mounts the image read-write, keeps working on it (new files, deletions, a big file), and
// unmounts cleanly; then the editor edits the kernel's result again. xfs_repair -n and xfs_db
// check must be clean after each side's turn.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { describeAsRoot, tempDir, withLoopMount } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { XfsEditor } from "../src/editor.js";
import { FEATURE_SETS, fsCheck, mkfsImage } from "./space-helpers.js";

async function editorTurn(path: string, round: number): Promise<void> {
  const dev = await FileDevice.open(path, { readOnly: false });
  const ed = await XfsEditor.open(dev, { timestamp: 1_700_000_000 + round });
  try {
    await ed.mkdir(`/ours${round}/deep`, { recursive: true });
    for (let i = 0; i < 200; i++)
      await ed.writeFile(`/ours${round}/f${i}`, new Uint8Array(1000 + i * 37).fill(i));
    await ed.writeFile(`/ours${round}/deep/big`, new Uint8Array(3 * 1024 * 1024).fill(round + 1));
    for (let i = 0; i < 200; i += 3) await ed.unlink(`/ours${round}/f${i}`);
    await ed.symlink(`/ours${round}/deep/big`, `/ours${round}/link`);
    await ed.setxattr(`/ours${round}/f1`, "security.selinux", "system_u:object_r:etc_t:s0\0");
    if (round > 0) await ed.rm(`/kernel${round - 1}/sub`, { recursive: true });
  } finally {
    await ed.close();
    await dev.close();
  }
  const c = fsCheck(path);
  expect(c.output).toBe("");
  expect(c.clean).toBe(true);
}

describeAsRoot(
  ["mkfs.xfs", "xfs_repair", "xfs_db", "losetup"],
  "editor and kernel take turns (rw mounts)",
  () => {
    for (const name of ["v5", "v5-rmap-reflink", "v5-1k"]) {
      it(`${name}: editor, kernel, editor, kernel — clean after every turn`, async () => {
        const dir = await tempDir("xfs-turns-");
        const path = mkfsImage(dir, "t.img", FEATURE_SETS[name], 128);
        const mnt = join(dir, "mnt");
        mkdirSync(mnt);
        for (let round = 0; round < 2; round++) {
          await editorTurn(path, round);
          await withLoopMount(path, mnt, { rw: true }, async (m) => {
            // The kernel reads what the editor wrote...
            expect(readFileSync(join(m, `ours${round}/f2`)).length).toBe(1000 + 2 * 37);
            expect(readFileSync(join(m, `ours${round}/deep/big`))[12345]).toBe(round + 1);
            // ...and keeps allocating and freeing on top of it.
            execFileSync("sh", [
              "-c",
              `set -e; mkdir -p ${m}/kernel${round}/sub; for i in $(seq 1 300); do echo $i > ${m}/kernel${round}/sub/k$i; done; ` +
                `rm -f ${m}/ours${round}/f1?; dd if=/dev/zero of=${m}/kernel${round}/blob bs=1M count=4 status=none; sync`,
            ]);
          });
          const c = fsCheck(path);
          expect(c.output).toBe("");
          expect(c.clean).toBe(true);
        }
      });
    }
  },
);
