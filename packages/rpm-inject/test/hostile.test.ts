/**
 * Hostile and damaged packages: typed errors naming the file and offset, and the target unchanged.
 */
import { readFileSync } from "node:fs";
import { mkdir, readdir, symlink } from "node:fs/promises";
import { join } from "node:path";
import { ImgpatchError } from "@imgpatch/disk";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import {
  HostDirTarget,
  injectRpm,
  MemoryTarget,
  RpmDigestError,
  RpmFormatError,
  RpmPathError,
  readRpm,
  verifyPayload,
} from "../src/index.js";
import { buildRpm, S_IFDIR, S_IFREG } from "./build-rpm.js";
import { describeAsRootWithTools, fixtureRpm } from "./helpers.js";

const demo = () => new Uint8Array(readFileSync(fixtureRpm("imgpatch-demo-gzip")));
const enc = new TextEncoder();

async function guest(): Promise<MemoryTarget> {
  const t = new MemoryTarget("guest", () => 1);
  await t.put("/etc/passwd", "root:x:0:0::/:/bin/sh\nimgsvc:x:990:991::/:/bin/false\n");
  await t.put("/etc/group", "root:x:0:\nimgsvc:x:991:\n");
  t.mutations = 0;
  return t;
}

/** Opens and injects; returns the error, asserting nothing was written. */
async function failsUnchanged(rpm: Uint8Array, name = "bad.rpm"): Promise<ImgpatchError> {
  const t = await guest();
  const before = JSON.stringify(t.list());
  let err: unknown;
  try {
    const pkg = await readRpm(rpm, { name });
    try {
      await injectRpm(pkg, t);
    } finally {
      await pkg.close();
    }
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ImgpatchError);
  expect(JSON.stringify(t.list())).toBe(before);
  return err as ImgpatchError;
}

function u32(buf: Uint8Array, at: number, v: number): Uint8Array {
  const out = Uint8Array.from(buf);
  new DataView(out.buffer).setUint32(at, v);
  return out;
}

describe("hostile RPMs", () => {
  it("bad lead magic", async () => {
    const b = demo();
    b[0] = 0;
    const e = await failsUnchanged(b);
    expect(e).toBeInstanceOf(RpmFormatError);
    expect(e).toMatchObject({ file: "bad.rpm", offset: 0 });
  });

  it("bad signature header magic", async () => {
    const b = demo();
    b[96] = 0;
    expect(await failsUnchanged(b)).toMatchObject({ name: "RpmFormatError", offset: 96 });
  });

  it("index count past the end of the file", async () => {
    const e = await failsUnchanged(u32(demo(), 96 + 8, 60000));
    expect(e.message).toMatch(/truncated: header needs/);
  });

  it("index count over rpm's limit", async () => {
    expect((await failsUnchanged(u32(demo(), 96 + 8, 0x7fffffff))).message).toMatch(/out of range/);
  });

  it("store size over the limit (no huge allocation)", async () => {
    expect((await failsUnchanged(u32(demo(), 96 + 12, 0xfffffff0))).message).toMatch(/exceeds/);
  });

  it("a data offset past the store", async () => {
    // Second index entry of the signature header: offset field.
    const e = await failsUnchanged(u32(demo(), 96 + 16 + 16 + 8, 0x7ffffff0));
    expect(e.message).toMatch(/outside the .*-byte store/);
    expect(e.offset).toBe(96 + 16 + 16);
  });

  it("a huge count", async () => {
    expect((await failsUnchanged(u32(demo(), 96 + 16 + 16 + 12, 0x7fffffff))).message).toMatch(
      /past the|cannot fit|count/,
    );
  });

  it("header digest mismatch", async () => {
    const b = demo();
    const pkg = await readRpm(b);
    const at = pkg.payload.offset - 40; // inside the main header's store
    await pkg.close();
    b[at] ^= 0xff;
    expect(await failsUnchanged(b)).toBeInstanceOf(RpmDigestError);
  });

  it("payload digest mismatch", async () => {
    const b = demo();
    b[b.length - 30] ^= 0x55;
    const e = await failsUnchanged(b);
    expect(e.code === "ECHECKSUM" || e.code === "EFORMAT").toBe(true);
  });

  it("truncated package", async () => {
    const b = demo();
    for (const cut of [50, 100, 500, b.length - 100, b.length - 1]) {
      const e = await failsUnchanged(b.subarray(0, cut));
      expect(e.message).toMatch(/truncated/);
    }
  });

  it("`..` in a header path", async () => {
    const rpm = buildRpm({
      files: [{ path: "/opt/../etc/shadow", mode: S_IFREG | 0o644, content: enc.encode("x") }],
    });
    const e = await failsUnchanged(rpm);
    expect(e).toBeInstanceOf(RpmPathError);
    expect(e.message).toMatch(/"\.\." component/);
  });

  it("a relative header path", async () => {
    const rpm = buildRpm({ files: [{ path: "etc/x", mode: S_IFREG | 0o644, content: enc.encode("x") }] });
    expect(await failsUnchanged(rpm)).toBeInstanceOf(RpmPathError);
  });

  it("a payload name that escapes", async () => {
    const rpm = buildRpm({
      files: [{ path: "/opt/x", mode: S_IFREG | 0o644, content: enc.encode("x") }],
      payloadNames: { "/opt/x": "../../opt/x" },
    });
    expect(await failsUnchanged(rpm)).toBeInstanceOf(RpmPathError);
  });

  it("a payload entry the header does not list", async () => {
    const rpm = buildRpm({
      files: [{ path: "/opt/x", mode: S_IFREG | 0o644, content: enc.encode("x") }],
      payloadNames: { "/opt/x": "./opt/y" },
    });
    expect((await failsUnchanged(rpm)).message).toMatch(/not in the header/);
  });

  it("a file missing from the payload", async () => {
    const rpm = buildRpm({
      files: [
        { path: "/opt/a", mode: S_IFREG | 0o644, content: enc.encode("a") },
        { path: "/opt/b", mode: S_IFREG | 0o644, content: enc.encode("b"), inPayload: false },
      ],
    });
    expect((await failsUnchanged(rpm)).message).toMatch(/missing from the payload/);
  });

  it("a file whose content lies about its digest (caught before writing)", async () => {
    const rpm = buildRpm({
      files: [
        { path: "/opt", mode: S_IFDIR | 0o755 },
        { path: "/opt/a", mode: S_IFREG | 0o644, content: enc.encode("a") },
        { path: "/opt/b", mode: S_IFREG | 0o644, content: enc.encode("b"), digest: "1".repeat(64) },
      ],
      payloadDigest: false,
    });
    const e = await failsUnchanged(rpm);
    expect(e).toBeInstanceOf(RpmDigestError);
    expect(e.file).toBe("bad.rpm:/opt/b");
  });

  it("a lying file digest behind a valid payload digest is rolled back", async () => {
    const rpm = buildRpm({
      files: [
        { path: "/opt", mode: S_IFDIR | 0o755 },
        { path: "/opt/a", mode: S_IFREG | 0o644, content: enc.encode("a") },
        { path: "/opt/b", mode: S_IFREG | 0o644, content: enc.encode("b"), digest: "1".repeat(64) },
      ],
    });
    expect(await failsUnchanged(rpm)).toBeInstanceOf(RpmDigestError);
  });

  it("a package file where the guest has a directory", async () => {
    const t = await guest();
    await t.ensureDir("/opt/a");
    t.mutations = 0;
    const rpm = buildRpm({ files: [{ path: "/opt/a", mode: S_IFREG | 0o644, content: enc.encode("a") }] });
    const pkg = await readRpm(rpm);
    await expect(injectRpm(pkg, t)).rejects.toMatchObject({ name: "InjectConflictError" });
    expect(t.mutations).toBe(0);
    await pkg.close();
  });

  it("a parent directory that is a file in the guest", async () => {
    const t = await guest();
    await t.put("/opt", "not a directory\n");
    t.mutations = 0;
    const rpm = buildRpm({
      files: [{ path: "/opt/sub/a", mode: S_IFREG | 0o644, content: enc.encode("a") }],
    });
    const pkg = await readRpm(rpm);
    await expect(injectRpm(pkg, t)).rejects.toThrow(/needs directory \/opt, which is a file/);
    expect(t.mutations).toBe(0);
    await pkg.close();
  });

  it("an unknown compressor is refused by name", async () => {
    const rpm = buildRpm({
      files: [{ path: "/opt/x", mode: S_IFREG | 0o644, content: enc.encode("x") }],
      compressor: "lz4",
    });
    const e = await failsUnchanged(rpm);
    expect(e).toMatchObject({ name: "RpmUnsupportedError", code: "EUNSUPPORTED" });
    expect(e.message).toMatch(/unknown payload compressor "lz4"/);
  });

  it("verifyPayload on a damaged payload gives a typed error", async () => {
    const b = demo();
    const pkg = await readRpm(b);
    const mid = pkg.payload.offset + Math.floor(pkg.payload.size / 2);
    await pkg.close();
    b[mid] ^= 0xff;
    const p2 = await readRpm(b);
    await expect(verifyPayload(p2)).rejects.toBeInstanceOf(ImgpatchError);
    await p2.close();
  });
});

describeAsRootWithTools([], "HostDirTarget keeps symlinks inside the root", () => {
  it("follows a guest symlink that climbs out, inside the root", async () => {
    const base = await tempDir("rpm-escape-");
    const root = join(base, "root");
    const outside = join(base, "outside");
    await mkdir(join(root, "etc"), { recursive: true });
    await mkdir(outside);
    await symlink("../../../../outside", join(root, "opt")); // relative climb
    await symlink(outside, join(root, "abs")); // absolute host path: means /<that path> in the guest
    // The guest's own view of those targets.
    await mkdir(join(root, "outside"));
    await mkdir(join(root, outside), { recursive: true });
    const rpm = buildRpm({
      files: [
        { path: "/opt/x", mode: S_IFREG | 0o644, content: enc.encode("x") },
        { path: "/abs/y", mode: S_IFREG | 0o644, content: enc.encode("y") },
      ],
    });
    const pkg = await readRpm(rpm);
    await injectRpm(pkg, new HostDirTarget(root));
    await pkg.close();
    expect(await readdir(outside)).toEqual([]);
    expect(readFileSync(join(root, "outside/x"), "utf8")).toBe("x");
    expect(readFileSync(join(root, outside, "y"), "utf8")).toBe("y");
  });
});
