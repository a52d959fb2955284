/**
 * Packages rpmbuild does not make here, built by test/build-rpm.ts: v3 (OLDFILENAMES), v6 / stripped
 * cpio with LONGFILESIZES, no payload digest, and a 200 MiB payload streamed with bounded memory.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { type InjectTarget, injectRpm, MemoryTarget, readRpm, verifyPayload } from "../src/index.js";
import { buildRpm, S_IFDIR, S_IFLNK, S_IFREG } from "./build-rpm.js";

const enc = new TextEncoder();
const files = [
  { path: "/opt/s", mode: S_IFDIR | 0o755 },
  { path: "/opt/s/a.txt", mode: S_IFREG | 0o644, content: enc.encode("alpha\n") },
  { path: "/opt/s/link", mode: S_IFLNK | 0o777, link: "a.txt" },
  { path: "/opt/s/h1", mode: S_IFREG | 0o600, content: enc.encode("same inode\n"), inode: 77 },
  { path: "/opt/s/h2", mode: S_IFREG | 0o600, content: enc.encode("same inode\n"), inode: 77 },
];

async function installInto(rpm: Uint8Array) {
  const pkg = await readRpm(rpm, { name: "synth.rpm" });
  const target = new MemoryTarget();
  try {
    const out = await injectRpm(pkg, target);
    return { pkg, target, ...out };
  } finally {
    await pkg.close();
  }
}

describe("synthetic package formats", () => {
  for (const [label, opts] of [
    ["v3 with OLDFILENAMES", { format: 3 as const }],
    ["v4 newc", { format: 4 as const }],
    ["v6 with stripped 07070X cpio and LONGFILESIZES", { format: 6 as const, longSizes: true }],
    [
      "v4 stripped, uncompressed, no payload digest",
      { format: 4 as const, stripped: true, compressor: "none", payloadDigest: false },
    ],
  ] as const) {
    it(label, async () => {
      const { pkg, target } = await installInto(buildRpm({ files, ...opts }));
      expect(pkg.format).toBe(opts.format);
      const list = target.list("/opt");
      const by = Object.fromEntries(list.map((e) => [e.path, e]));
      expect(new TextDecoder().decode(by["/opt/s/a.txt"].data)).toBe("alpha\n");
      expect(by["/opt/s/link"].target).toBe("a.txt");
      expect(by["/opt/s/h1"].ino).toBe(by["/opt/s/h2"].ino);
      expect(by["/opt/s/h1"].nlink).toBe(2);
      expect(by["/opt/s/h1"].perms).toBe(0o600);
      expect(by["/opt/s/a.txt"].mtime).toBe(1700000000);
    });
  }

  it("v6 with SHA3-256 header, payload and file digests", async () => {
    const { pkg, target } = await installInto(buildRpm({ files, format: 6, sha3: true }));
    expect(pkg.headerDigests).toEqual(["sha3-256", "sha256"]);
    expect(pkg.fileDigestAlgo.name).toBe("sha3-256");
    expect(pkg.payload.digest?.algo).toBe("sha3-256");
    expect(target.list("/opt").length).toBe(5);
    const bad = buildRpm({ files, format: 6, sha3: true });
    bad[bad.length - 3] ^= 1;
    const p2 = await readRpm(bad);
    await expect(verifyPayload(p2)).rejects.toMatchObject({
      code: expect.stringMatching(/ECHECKSUM|EFORMAT/),
    });
    await p2.close();
  });

  it("checks the 070702 (crc) cpio checksum", async () => {
    const { target } = await installInto(buildRpm({ files, crc: true }));
    expect(target.list("/opt").length).toBe(5);
    const pkg = await readRpm(buildRpm({ files, crc: "bad", payloadDigest: false }));
    await expect(verifyPayload(pkg)).rejects.toThrow(/070702 checksum/);
    await pkg.close();
  });

  it("streams a 200 MiB payload without holding it in memory", async () => {
    const size = 200 * 1024 * 1024;
    const rpm = buildRpm({ files: [{ path: "/big.bin", mode: S_IFREG | 0o644, zeros: size }] });
    expect(rpm.length).toBeLessThan(2 * 1024 * 1024);
    // A target that only counts what it is given.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    let written = 0;
    let peak = 0;
    let nextSample = 0;
    // Live memory (after a collection) every 16 MiB written: what the pipeline really holds.
    const sample = () => {
      if (written < nextSample) return;
      nextSample += 16 * 1024 * 1024;
      gc();
      const m = process.memoryUsage();
      peak = Math.max(peak, m.heapUsed + m.arrayBuffers);
    };
    const mem = new MemoryTarget();
    const counting: InjectTarget = Object.assign(Object.create(mem) as MemoryTarget, {
      writeFile: async (_p: string, content: AsyncIterable<Uint8Array>) => {
        for await (const c of content) {
          written += c.length;
          sample();
        }
        await mem.writeFile(_p, (async function* () {})(), 0o644);
      },
    });
    gc();
    const before = process.memoryUsage();
    const base = before.heapUsed + before.arrayBuffers;
    const pkg = await readRpm(rpm);
    try {
      await injectRpm(pkg, counting);
    } finally {
      await pkg.close();
    }
    expect(written).toBe(size);
    expect(peak - base).toBeLessThan(32 * 1024 * 1024);
  });

  it("verifies the whole payload first when the package has no payload digest", async () => {
    const bad = buildRpm({
      files: [{ path: "/x", mode: S_IFREG | 0o644, content: enc.encode("x"), digest: "0".repeat(64) }],
      payloadDigest: false,
    });
    const pkg = await readRpm(bad);
    const target = new MemoryTarget();
    await expect(injectRpm(pkg, target)).rejects.toMatchObject({ name: "RpmDigestError", code: "ECHECKSUM" });
    expect(target.mutations).toBe(0);
    await expect(verifyPayload(pkg)).rejects.toThrow(/file \/x: digest mismatch/);
    await pkg.close();
  });
});
