/** The backing policy's building blocks: protocol names, resolution, verdicts, and references in other formats. */
import { execFileSync } from "node:child_process";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import {
  detectImageFormat,
  hostLinkPolicy,
  imageFileReferences,
  inspectHostLink,
  isProtocolName,
  MemoryDevice,
  openHostLink,
  resolveLinkPath,
  UnsafeImageError,
  vmdkDescriptorReferences,
} from "../src/index.js";

describe("isProtocolName (qemu's path_has_protocol)", () => {
  it.each([
    ["nbd:localhost:10809", true],
    ["nbd://h/x", true],
    ["json:{}", true],
    ["file:/etc/passwd", true],
    ["a:b", true],
    ["./a:b", false],
    ["/abs/a:b", false],
    ["base.qcow2", false],
    ["../x", false],
  ])("%s → %s", (name, expected) => {
    expect(isProtocolName(name)).toBe(expected);
  });
});

describe("host links", () => {
  it("resolve against the referrer's directory; relative names without one are unresolvable", async () => {
    expect(resolveLinkPath("b.raw", "/x/y/a.qcow2")).toBe("/x/y/b.raw");
    expect(resolveLinkPath("../b.raw", "/x/y/a.qcow2")).toBe("/x/b.raw");
    expect(resolveLinkPath("/b.raw", null)).toBe("/b.raw");
    expect(resolveLinkPath("b.raw", null)).toBeNull();
    const v = await inspectHostLink(
      { kind: "backing file", name: "b.raw", referrer: "dev", referrerPath: null },
      await hostLinkPolicy(["/"]),
    );
    expect([v.verdict, v.error?.reason]).toEqual(["refused", "unresolvable"]);
  });

  it("verdicts: inside, below, outside (with the directory to trust), symlink loops, single-file roots", async () => {
    const root = await tempDir("host-policy-");
    const a = join(root, "a");
    const b = join(root, "b");
    await mkdir(join(a, "sub"), { recursive: true });
    await mkdir(b);
    await writeFile(join(a, "in.raw"), "x");
    await writeFile(join(a, "sub", "below.raw"), "x");
    await writeFile(join(b, "out.raw"), "secret");
    await symlink("loop2", join(a, "loop1"));
    await symlink("loop1", join(a, "loop2"));
    const policy = await hostLinkPolicy([a]);
    const ref = (name: string) => ({
      kind: "backing file",
      name,
      referrer: "img",
      referrerPath: join(a, "img"),
    });
    expect((await inspectHostLink(ref("in.raw"), policy)).verdict).toBe("ok");
    expect((await inspectHostLink(ref("sub/below.raw"), policy)).verdict).toBe("ok");
    const out = await inspectHostLink(ref("../b/out.raw"), policy);
    expect([out.verdict, out.target, out.error?.trust]).toEqual(["refused", join(b, "out.raw"), b]);
    expect((await inspectHostLink(ref("loop1"), policy)).verdict).toBe("missing");
    expect((await inspectHostLink(ref("nothing"), policy)).verdict).toBe("missing");
    // a sibling directory whose name starts like the root is not inside it
    await mkdir(`${a}2`);
    await writeFile(join(`${a}2`, "x.raw"), "x");
    expect((await inspectHostLink(ref(`${a}2/x.raw`), policy)).verdict).toBe("refused");
    // a single file may be allowed
    const one = await hostLinkPolicy([a, join(b, "out.raw")]);
    const opened = await openHostLink(ref("../b/out.raw"), one);
    expect(opened.size).toBe(6);
    await opened.handle.close();
  });

  it("a FIFO is refused without blocking; /dev/null is refused even when / is allowed", async () => {
    const root = await tempDir("host-policy-");
    execFileSync("mkfifo", [join(root, "f")]);
    const all = await hostLinkPolicy(["/"]);
    const ref = (name: string) => ({
      kind: "data file",
      name,
      referrer: "img",
      referrerPath: join(root, "img"),
    });
    const fifo = await openHostLink(ref("f"), all).catch((e: unknown) => e);
    expect(fifo).toBeInstanceOf(UnsafeImageError);
    expect((fifo as UnsafeImageError).reason).toBe("not-regular");
    const dev = await openHostLink(ref("/dev/null"), all).catch((e: unknown) => e);
    expect((dev as UnsafeImageError).reason).toBe("system");
  });
});

describe("file references of formats imgpatch does not open", () => {
  it("vmdk descriptor extents and parent hint", () => {
    const text =
      '# Disk DescriptorFile\nversion=1\nparentFileNameHint="../parent.vmdk"\nRW 2048 FLAT "/etc/shadow" 0\nRDONLY 10 SPARSE "x-s001.vmdk"\n';
    expect(vmdkDescriptorReferences(text)).toEqual([
      { kind: "parent", name: "../parent.vmdk" },
      { kind: "extent", name: "/etc/shadow" },
      { kind: "extent", name: "x-s001.vmdk" },
    ]);
  });

  it("qed backing name; truncated or absurd offsets give no reference and no error", async () => {
    const head = new Uint8Array(4096);
    head.set(new TextEncoder().encode("QED\0"), 0);
    const dv = new DataView(head.buffer);
    dv.setBigUint64(16, 1n, true); // has a backing file
    dv.setUint32(56, 1024, true);
    dv.setUint32(60, 11, true);
    head.set(new TextEncoder().encode("/etc/passwd"), 1024);
    const dev = new MemoryDevice(head);
    const info = await detectImageFormat(dev);
    expect(await imageFileReferences(dev, info)).toEqual([{ kind: "backing file", name: "/etc/passwd" }]);
    dv.setUint32(56, 0xffff_fff0, true);
    expect(await imageFileReferences(dev, info)).toEqual([]);
    const short = new MemoryDevice(head.slice(0, 8));
    expect(await imageFileReferences(short, await detectImageFormat(short))).toEqual([]);
  });
});
