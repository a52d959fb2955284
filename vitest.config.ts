import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Tests run against the TypeScript sources, not dist/, so `npm test` needs no build step.
const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url));

const workers = Number(process.env.IMGPATCH_TEST_WORKERS) || Math.max(4, availableParallelism());

export default defineConfig({
  resolve: {
    alias: {
      "@imgpatch/disk": src("disk"),
      "@imgpatch/qcow2": src("qcow2"),
      "@imgpatch/ext4": src("ext4"),
      "@imgpatch/xfs": src("xfs"),
      "@imgpatch/selinux": src("selinux"),
      "@imgpatch/pkgkit": src("pkgkit"),
      "@imgpatch/deb": src("deb"),
      // Subpath exports first: an alias also matches ids that continue with "/".
      "@imgpatch/rpm-inject/header": fileURLToPath(
        new URL("./packages/rpm-inject/src/header.ts", import.meta.url),
      ),
      "@imgpatch/rpm-inject": src("rpm-inject"),
      "@imgpatch/rpm-repo": src("rpm-repo"),
      "@imgpatch/testkit": src("testkit"),
      imgpatch: src("cli"),
    },
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test-fixtures/test/**/*.test.ts"],
    // Hang guards, not speed assertions: with several test files running at once on a small,
    // shared machine, a CPU-bound test can take a few times its quiet duration.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // Processes, not threads: tests spawn tools, change process.env and loop-mount images.
    pool: "forks",
    // Most test time is spent waiting on child processes (mkfs, e2fsck, qemu-img, xfs_repair) and
    // the disk, so more files run at once than there are cores (vitest's default is cores - 1: a
    // single worker on 2 cores). IMGPATCH_TEST_WORKERS overrides it.
    maxWorkers: workers,
    minWorkers: 1,
  },
});
