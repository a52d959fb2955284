/**
 * Mutated and truncated packages only ever produce typed errors (ImgpatchError subclasses), in
 * bounded time: no TypeError/RangeError escapes, no hang, no runaway allocation.
 */
import { readFileSync } from "node:fs";
import { ImgpatchError } from "@imgpatch/disk";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { injectRpm, MemoryTarget, readRpm, verifyPayload } from "../src/index.js";
import { fixtureRpm } from "./helpers.js";

const TIME_LIMIT_MS = 5_000;

async function exercise(bytes: Uint8Array, skipHeaderDigest: boolean): Promise<void> {
  const work = (async () => {
    const pkg = await readRpm(bytes, { name: "fuzz.rpm", skipHeaderDigest });
    try {
      await verifyPayload(pkg);
      const t = new MemoryTarget();
      await t.put("/etc/passwd", "root:x:0:0::/:/bin/sh\nimgsvc:x:990:991::/:/bin/false\n");
      await t.put("/etc/group", "root:x:0:\nimgsvc:x:991:\n");
      await injectRpm(pkg, t, { missingOwner: "root" });
    } finally {
      await pkg.close();
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result within ${TIME_LIMIT_MS} ms`)), TIME_LIMIT_MS);
  });
  try {
    await Promise.race([work, timeout]);
  } catch (e) {
    if (!(e instanceof ImgpatchError)) throw e;
  } finally {
    clearTimeout(timer);
  }
}

describe("fuzzing", () => {
  for (const name of [
    "imgpatch-demo-gzip",
    "imgpatch-mini-xz",
    "imgpatch-mini-zstd",
    "imgpatch-mini-bzip2",
  ]) {
    const original = new Uint8Array(readFileSync(fixtureRpm(name)));
    // Where the headers end: mutations there hit lead, signature and header parsing.
    const headerEnd = Math.min(original.length, 8192);

    it(`${name}: mutated header bytes give only typed errors`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.tuple(fc.nat({ max: headerEnd - 1 }), fc.integer({ min: 0, max: 255 })), {
            minLength: 1,
            maxLength: 8,
          }),
          fc.boolean(),
          async (mutations, skip) => {
            const b = Uint8Array.from(original);
            for (const [at, v] of mutations) b[at] = v;
            await exercise(b, skip);
          },
        ),
        { numRuns: 150, seed: 4242 },
      );
    });

    it(`${name}: mutated payload bytes and truncations give only typed errors`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.tuple(fc.nat({ max: original.length - 1 }), fc.integer({ min: 0, max: 255 })), {
            minLength: 1,
            maxLength: 4,
          }),
          fc.nat({ max: original.length }),
          async (mutations, cut) => {
            const b = Uint8Array.from(original);
            for (const [at, v] of mutations) b[at] = v;
            await exercise(b.subarray(0, Math.max(cut, original.length - 64)), true);
            await exercise(b.subarray(0, cut), true);
          },
        ),
        { numRuns: 60, seed: 4243 },
      );
    });
  }

  it("intact fixtures still pass the same path", async () => {
    const b = new Uint8Array(readFileSync(fixtureRpm("imgpatch-demo-gzip")));
    const pkg = await readRpm(b);
    expect((await verifyPayload(pkg)).entries).toBe(25);
    await pkg.close();
  });
});
