/**
 * The streaming decoders against the real compressors, beyond what small fixtures reach: several
 * bzip2 blocks and concatenated streams, multi-block and concatenated xz with every check type,
 * chunk boundaries anywhere.
 */
import { createHash } from "node:crypto";
import { describeWithTools, runTool } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { type Compressor, decompress } from "../src/index.js";

/** ~3 MiB of text-like data: compressible but not trivially. */
function sample(bytes: number, seed = 1): Buffer {
  const words = ["rpm ", "payload ", "cpio ", "header ", "digest ", "\n", "ext4 ", "guest ", "the ", "0x1f "];
  let x = seed;
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = words[x % words.length] + (x % 7 === 0 ? String(x % 1000) : "");
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join("")).subarray(0, bytes);
}

async function compress(tool: string, args: string[], data: Buffer): Promise<Buffer> {
  const r = await runTool(tool, args, { input: data });
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout;
}

async function decodeAll(kind: Compressor, data: Uint8Array, chunk: number): Promise<Buffer> {
  async function* src() {
    for (let i = 0; i < data.length; i += chunk) yield data.subarray(i, i + chunk);
  }
  const out: Uint8Array[] = [];
  for await (const c of decompress(kind, src())) out.push(Uint8Array.from(c));
  return Buffer.concat(out);
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describeWithTools(["xz", "bzip2", "zstd", "gzip"], "streaming decoders vs the real compressors", () => {
  const data = sample(3 * 1024 * 1024 + 123);

  it("bzip2: several blocks, and concatenated streams", async () => {
    const one = await compress("bzip2", ["-1", "-c"], data); // 100 kB blocks → ~30 blocks
    expect(sha(await decodeAll("bzip2", one, 65536))).toBe(sha(data));
    const two = Buffer.concat([one, await compress("bzip2", ["-9", "-c"], data.subarray(0, 1000))]);
    expect(sha(await decodeAll("bzip2", two, 7777))).toBe(sha(Buffer.concat([data, data.subarray(0, 1000)])));
  });

  for (const check of ["sha256", "crc64", "crc32", "none"]) {
    it(`xz: check ${check}, several blocks, concatenated with stream padding`, async () => {
      const a = await compress("xz", ["-1", "-c", `--check=${check}`, "--block-size=262144"], data);
      const b = await compress("xz", ["-1", "-c", `--check=${check}`], data.subarray(0, 5000));
      const joined = Buffer.concat([a, Buffer.alloc(8), b]); // stream padding between streams
      expect(sha(await decodeAll("xz", joined, 100_000))).toBe(
        sha(Buffer.concat([data, data.subarray(0, 5000)])),
      );
    });
  }

  it("zstd and gzip at every chunking", async () => {
    const z = await compress("zstd", ["-3", "-c", "-q"], data);
    const g = await compress("gzip", ["-6", "-c"], data);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 300_000 }), async (chunk) => {
        expect(sha(await decodeAll("zstd", z, chunk))).toBe(sha(data));
        expect(sha(await decodeAll("gzip", g, chunk))).toBe(sha(data));
      }),
      { numRuns: 6, seed: 7 },
    );
  });

  it("truncated streams are typed errors", async () => {
    for (const [kind, tool, args] of [
      ["xz", "xz", ["-1", "-c"]],
      ["bzip2", "bzip2", ["-1", "-c"]],
      ["zstd", "zstd", ["-3", "-c", "-q"]],
      ["gzip", "gzip", ["-c"]],
    ] as const) {
      const c = await compress(tool, [...args], data.subarray(0, 400_000));
      await expect(
        decodeAll(kind, c.subarray(0, Math.floor(c.length / 2)), 4096),
        kind,
      ).rejects.toMatchObject({
        code: "EFORMAT",
      });
    }
  });
});
