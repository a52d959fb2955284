import { lstat, mkdir, readFile, readlink, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { isGuestError } from "../src/guest/guest-fs.js";
import { HostDirGuestFs } from "../src/guest/host-dir-fs.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";
import { normalizeGuestPath } from "../src/guest/paths.js";
import { describeGuestFsConformance } from "./guest-fs-conformance.js";

describeGuestFsConformance("MemoryGuestFs", async () => new MemoryGuestFs());
describeGuestFsConformance("HostDirGuestFs", async () => new HostDirGuestFs(await tempDir()));

const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("HostDirGuestFs confinement", () => {
  it("never follows guest symlinks to host paths outside the root", async () => {
    const outside = await tempDir();
    await writeFile(join(outside, "secret"), "host secret");
    const root = await tempDir();
    await mkdir(join(root, "etc"));
    await writeFile(join(root, "etc", "secret"), "guest file");
    // Symlinks planted by a hostile image, pointing at absolute host paths and above the root.
    await symlink(join(outside, "secret"), join(root, "abs"));
    await symlink("/etc/secret", join(root, "etc", "x"));
    await symlink(`../../../../../../../..${outside}/secret`, join(root, "up"));
    await symlink(outside, join(root, "dirlink"));
    const fs = new HostDirGuestFs(root);
    await expect(fs.readFile("/abs")).rejects.toSatisfy((e) => isGuestError(e, "ENOENT"));
    expect(text(await fs.readFile("/etc/x"))).toBe("guest file");
    await expect(fs.readFile("/up")).rejects.toSatisfy((e) => isGuestError(e, "ENOENT"));
    // Writing through a link into a host directory lands inside the root instead.
    await expect(fs.writeFile("/dirlink/secret", "pwned")).rejects.toSatisfy((e) =>
      isGuestError(e, "ENOENT"),
    );
    await fs.mkdir(outside, { recursive: true });
    await fs.writeFile("/dirlink/secret", "inside");
    expect(await readFile(join(outside, "secret"), "utf8")).toBe("host secret");
    expect(await readFile(join(root, ...outside.split("/").filter(Boolean), "secret"), "utf8")).toBe(
      "inside",
    );
    // The links themselves are untouched.
    expect(await readlink(join(root, "abs"))).toBe(join(outside, "secret"));
    expect((await lstat(join(root, "abs"))).isSymbolicLink()).toBe(true);
  });

  it("normalises paths lexically", () => {
    expect(normalizeGuestPath("//a/./b/../c/")).toBe("/a/c");
    expect(normalizeGuestPath("/../..")).toBe("/");
  });
});

describe("HostDirGuestFs confinement (property)", () => {
  it("random symlink webs never let writes, mkdirs or unlinks reach outside the root", async () => {
    const { readdir: hostReaddir } = await import("node:fs/promises");
    const fc = (await import("fast-check")).default;
    const outside = await tempDir();
    await writeFile(join(outside, "canary"), "c");
    const comp = fc.constantFrom("a", "b", "..", ".", "etc", outside.slice(1).split("/")[0]);
    // Link targets: random guest-ish paths, and the real host directory and file a naive
    // implementation (letting the host kernel follow links) would reach.
    const target = fc.oneof(
      fc
        .tuple(fc.boolean(), fc.array(comp, { minLength: 1, maxLength: 4 }))
        .map(([abs, parts]) => `${abs ? "/" : ""}${parts.join("/")}`),
      fc.constantFrom(outside, `${outside}/canary`, `../../../../../../../..${outside}`),
    );
    const guestPath = fc.array(comp, { minLength: 1, maxLength: 5 }).map((p) => `/${p.join("/")}`);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(guestPath, target), { maxLength: 6 }),
        fc.array(fc.tuple(fc.constantFrom("write", "mkdir", "unlink", "symlink"), guestPath, target), {
          maxLength: 8,
        }),
        async (links, ops) => {
          const root = await tempDir();
          const fs = new HostDirGuestFs(root);
          await fs.mkdir("/a/b", { recursive: true });
          await fs.mkdir("/etc", { recursive: true });
          for (const [p, t] of links) await fs.symlink(t, p).catch(() => undefined);
          for (const [op, p, t] of ops) {
            if (op === "write") await fs.writeFile(p, "x").catch(() => undefined);
            else if (op === "mkdir") await fs.mkdir(p, { recursive: true }).catch(() => undefined);
            else if (op === "unlink") await fs.unlink(p).catch(() => undefined);
            else await fs.symlink(t, p).catch(() => undefined);
          }
          expect(await hostReaddir(outside)).toEqual(["canary"]);
          expect(await readFile(join(outside, "canary"), "utf8")).toBe("c");
        },
      ),
      { numRuns: 60 },
    );
  });
});
