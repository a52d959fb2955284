import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Tests run against the TypeScript sources, not dist/, so `npm test` needs no build step.
const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url));

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
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
