/**
 * Mutated and truncated packages only ever produce typed errors (ImgpatchError subclasses), in
 * bounded time: no TypeError/RangeError escapes, no hang, no runaway allocation.
 */
import { readFileSync } from "node:fs";
import { ImgpatchError } from "@imgpatch/disk";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkSignaturePolicy,
  injectRpm,
  MemoryTarget,
  RpmKeyError,
  RpmKeyring,
  RpmSignatureError,
  RpmType,
  readRpm,
  SigTag,
  verifyPayload,
} from "../src/index.js";
import { buildRpm, S_IFREG } from "./build-rpm.js";
import { fixtureRpm } from "./helpers.js";
import { editSignature, mainHeaderOf, makeTestKey, signData, signDataV3 } from "./signing.js";

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

describe("fuzzing signature packets and key files", () => {
  const rsa = makeTestKey("rsa");
  const ed = makeTestKey("ed25519");
  const ec = makeTestKey("p256");
  const base = buildRpm({
    name: "sigfuzz",
    files: [{ path: "/opt/sigfuzz/a", mode: S_IFREG | 0o644, content: new TextEncoder().encode("a\n") }],
  });
  const header = mainHeaderOf(base).bytes;
  const covered = base.subarray(mainHeaderOf(base).offset);
  const sigs: [number, Uint8Array][] = [
    [SigTag.RSAHEADER, signData(rsa, header)],
    [SigTag.DSAHEADER, signData(ed, header)],
    [SigTag.PGP, signDataV3(rsa, covered)],
    [SigTag.GPG, signData(ec, covered, { hash: "sha384" })],
  ];
  const keys = [rsa.publicKey, ed.publicKey, ec.publicKey];

  /** Only RpmSignatureError may come out, within the time limit, and a refusal writes nothing. */
  async function exerciseSig(tag: number, packet: Uint8Array): Promise<void> {
    const bytes = editSignature(base, (es) => [...es, { tag, type: RpmType.BIN, value: packet }]);
    const work = (async () => {
      const pkg = await readRpm(bytes, { name: "sigfuzz.rpm" });
      const t = new MemoryTarget();
      await t.put("/etc/passwd", "root:x:0:0::/:/bin/sh\n");
      await t.put("/etc/group", "root:x:0:\n");
      const before = t.mutations;
      try {
        await checkSignaturePolicy(pkg, { keys });
        await injectRpm(pkg, t, { keys, signature: "required" });
      } catch (e) {
        if (!(e instanceof RpmSignatureError)) throw e;
        expect(t.mutations).toBe(before);
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
    } finally {
      clearTimeout(timer);
    }
  }

  it("the intact signatures verify", async () => {
    const bytes = editSignature(base, (es) => [
      ...es,
      ...sigs.map(([tag, value]) => ({ tag, type: RpmType.BIN, value })),
    ]);
    const pkg = await readRpm(bytes);
    const v = await checkSignaturePolicy(pkg, { keys, signature: "required" });
    expect(v.checks.map((c) => c.status)).toEqual(["OK", "OK", "OK", "OK"]);
    await pkg.close();
  });

  for (const [tag, packet] of sigs) {
    it(`tag ${tag}: mutated, truncated and extended signature packets give only RpmSignatureError`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.tuple(fc.nat({ max: packet.length - 1 }), fc.integer({ min: 0, max: 255 })), {
            minLength: 0,
            maxLength: 6,
          }),
          fc.nat({ max: packet.length }),
          fc.uint8Array({ maxLength: 24 }),
          async (mutations, cut, tail) => {
            const b = Uint8Array.from(packet);
            for (const [at, v] of mutations) b[at] = v;
            const shaped = new Uint8Array(Buffer.concat([b.subarray(0, Math.max(1, cut)), tail]));
            await exerciseSig(tag, shaped);
          },
        ),
        { numRuns: 150, seed: 4300 + tag },
      );
    });
  }

  it("random bytes as a signature packet give only RpmSignatureError", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), async (b) => {
        await exerciseSig(SigTag.RSAHEADER, b);
      }),
      { numRuns: 200, seed: 4401 },
    );
  });

  it("mutated key files give keys or RpmKeyError, nothing else", async () => {
    const armoredAll = new TextEncoder().encode(rsa.armored + ed.armored);
    for (const original of [...keys, armoredAll]) {
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat({ max: original.length - 1 }), fc.integer({ min: 0, max: 255 })), {
            minLength: 1,
            maxLength: 6,
          }),
          fc.nat({ max: original.length }),
          (mutations, cut) => {
            const b = Uint8Array.from(original);
            for (const [at, v] of mutations) b[at] = v;
            try {
              new RpmKeyring().add(b.subarray(0, Math.max(cut, 1)), "fuzz.key");
            } catch (e) {
              if (!(e instanceof RpmKeyError)) throw e;
            }
          },
        ),
        { numRuns: 300, seed: 4500 + original.length },
      );
    }
  });
});
