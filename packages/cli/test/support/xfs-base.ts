/**
 * make-xfs-base-image.sh's disk, built once per script version, variant and tool set and shared by
 * the test files that edit it (each test takes a private copy): the script takes 5–20 s, and
 * xfs-guest alone needs it in 14 tests.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BuildInputs, builtCopy, runToolOk } from "@imgpatch/testkit";

const DIR = fileURLToPath(new URL("../../../../test-fixtures/base-image/", import.meta.url));
export const MAKE_XFS_BASE = join(DIR, "make-xfs-base-image.sh");

/** The variables the script reads (XFS_MKFS_ARGS, LAYOUT). */
export type XfsBaseEnv = { XFS_MKFS_ARGS?: string; LAYOUT?: string };

function inputs(env: XfsBaseEnv): BuildInputs {
  return {
    name: `xfs-base${env.LAYOUT ? `-${env.LAYOUT}` : ""}.qcow2`,
    files: [MAKE_XFS_BASE, join(DIR, "base-tree.sh")],
    // The user is part of the key: CI reruns these tests as nobody, and the script must build
    // rootless there (an unreadable /etc/shadow once failed it), not reuse root's build.
    params: [
      `XFS_MKFS_ARGS=${env.XFS_MKFS_ARGS ?? ""}`,
      `LAYOUT=${env.LAYOUT ?? ""}`,
      `uid=${process.getuid?.()}`,
    ],
    tools: ["mkfs.xfs", "xfs_db", "xfs_repair", "mkfs.vfat", "mcopy", "sfdisk", "qemu-img", "rpm"],
  };
}

/** A private copy of the script's disk at `out` (the script runs only when no build is cached). */
export function xfsBaseCopy(env: XfsBaseEnv, out: string): Promise<string> {
  return builtCopy(
    inputs(env),
    async (tmp) => {
      await runToolOk("bash", [MAKE_XFS_BASE, tmp], { env: { ...env }, timeoutMs: 600_000 });
    },
    out,
  );
}
