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
