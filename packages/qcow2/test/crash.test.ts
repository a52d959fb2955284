import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { IoError } from "@imgpatch/disk";
import { describeWithTools, qemuImg, qemuImgCheck, sweepPoints, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import {
  type CreateQcow2Options,
  createQcow2,
  type HostFile,
  MemoryHostFile,
  openQcow2,
} from "../src/index.js";
import { firstDiff, qemuRaw, randomBytes } from "./helpers.js";

/** A host file that dies at its N-th write: that write and everything after fail. */
class FaultHostFile implements HostFile {
  writes = 0;
  crashed = false;
  constructor(
    private readonly inner: MemoryHostFile,
    private readonly limit: number,
  ) {}
  get name() {
    return this.inner.name;
  }
  get readOnly() {
    return this.inner.readOnly;
  }
  get length() {
    return this.inner.length;
  }
  read(o: number, t: Uint8Array) {
    return this.inner.read(o, t);
  }
  private tick() {
    if (this.crashed || ++this.writes > this.limit) {
      this.crashed = true;
      throw new IoError("injected crash", { file: this.name });
    }
  }
  async write(o: number, d: Uint8Array) {
    this.tick();
    await this.inner.write(o, d);
  }
  async sync() {
    // The crash model is "a prefix of the writes reached the disk", so a barrier only has to
    // fail after the crash; skipping the real fsync keeps hundreds of runs fast.
    if (this.crashed) throw new IoError("injected crash", { file: this.name });
    this.syncs++;
  }
  syncs = 0;
  close() {
    return this.inner.close();
  }
}

type Step =
  | { op: "write"; off: number; len: number; seed: number }
  | { op: "zero" | "discard"; off: number; len: number }
  | { op: "flush" };

const K = 1024;
const WORKLOAD: Step[] = [
  { op: "write", off: 0, len: 20 * K, seed: 1 },
  { op: "flush" },
  { op: "write", off: 100 * K + 3, len: 50 * K, seed: 2 },
  { op: "zero", off: 5 * K, len: 4 * K },
  { op: "flush" },
  { op: "discard", off: 0, len: 8 * K },
  { op: "write", off: 300 * K, len: 700 * K, seed: 3 }, // many new L2 tables and refcount blocks
  { op: "flush" },
  { op: "write", off: 1000 * K + 100, len: 3 * K, seed: 4 },
  { op: "zero", off: 400 * K, len: 64 * K },
  { op: "write", off: 7, len: 100, seed: 5 },
  { op: "flush" },
];

async function run(
  dev: Awaited<ReturnType<typeof openQcow2>>,
  model: Uint8Array,
  onAck: (m: Uint8Array, i: number) => void,
) {
  for (const [i, s] of WORKLOAD.entries()) {
    if (s.op === "flush") {
      await dev.flush();
      onAck(model.slice(), i);
    } else if (s.op === "write") {
      const data = randomBytes(s.len, s.seed);
      await dev.write(s.off, data);
      model.set(data, s.off);
    } else {
      await (s.op === "zero" ? dev.writeZeroes(s.off, s.len) : dev.discard(s.off, s.len));
      model.fill(0, s.off, s.off + s.len);
    }
  }
}

/** What must read back: the acknowledged state, except where later (unacknowledged) steps wrote. */
function expectedAfterCrash(acked: Uint8Array, got: Uint8Array, ackIndex: number): Uint8Array {
  const expected = acked.slice();
  for (const s of WORKLOAD.slice(ackIndex + 1)) {
    if (s.op !== "flush") expected.set(got.subarray(s.off, s.off + s.len), s.off);
  }
  return expected;
}

const CONFIGS: {
  name: string;
  create: CreateQcow2Options;
  backing?: boolean;
  growsRefcountTable?: boolean;
}[] = [
  // (refcount-table growth under power loss is covered by crash-faulty.test.ts)
  { name: "v3, 512 B clusters, 64-bit refcounts", create: { clusterSize: 512, refcountBits: 64 } },
  { name: "v2 overlay over raw, 4 KiB clusters", create: { version: 2, clusterSize: 4096 }, backing: true },
  {
    name: "extended L2 overlay, 16 KiB clusters",
    create: { extendedL2: true, clusterSize: 16384 },
    backing: true,
  },
];

describeWithTools(["qemu-img"], "crash safety: the host file dies after its N-th write, for every N", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("qcow2-crash-");
  });

  for (const [ci, cfg] of CONFIGS.entries()) {
    it(`${cfg.name}: never corrupt, acknowledged data survives`, async () => {
      const size = 2560 * K;
      const pristine = join(dir, `pristine${ci}.qcow2`);
      const base = new Uint8Array(size);
      let backing: CreateQcow2Options["backing"];
      if (cfg.backing) {
        base.set(randomBytes(size, 99));
        await writeFile(join(dir, `base${ci}.raw`), base);
        backing = { path: `base${ci}.raw`, format: "raw" };
      }
      await (await createQcow2(pristine, { ...cfg.create, size, backing })).close();
      // The image lives in memory while the workload runs (fast, no fsync); the surviving bytes
      // are then written out for qemu-img to judge.
      const pristineBytes = new Uint8Array(await readFile(pristine));
      const memHost = (name: string) => new MemoryHostFile(pristineBytes.slice(), name);
      const cs = cfg.create.clusterSize!;
      const backingResolver = async () =>
        (await import("@imgpatch/disk")).FileDevice.open(join(dir, `base${ci}.raw`), { readOnly: true });
      const open = (host: HostFile) =>
        openQcow2(host, {
          // tiny caches: dirty L2 tables and refcount blocks get evicted mid-operation
          l2CacheBytes: Math.max(2 * cs, 16 * K),
          refcountCacheBytes: Math.max(2 * cs, 8 * K),
          backing: backing ? backingResolver : "none",
        });
      // count the writes of a full run
      const counter = new FaultHostFile(memHost("probe.qcow2"), Number.POSITIVE_INFINITY);
      const full = await open(counter);
      const tableBefore = full.refcounts!.tableLocation;
      await run(full, base.slice(), () => {});
      if (cfg.growsRefcountTable) expect(full.refcounts!.tableLocation).not.toEqual(tableBefore);
      await full.close();
      await counter.close();
      const total = counter.writes;
      console.log(`${cfg.name}: ${total} writes`);
      expect(total).toBeGreaterThan(15);
      expect(total).toBeLessThan(400); // keep the suite fast

      let corrupt = 0;
      // Every N under test:full; npm test takes 48 of them, evenly spread (first and last included).
      const points = sweepPoints(total - 1, 48);
      console.log(`${cfg.name}: ${points.length} of ${total} crash points`);
      for (const n of points) {
        const image = join(dir, `crash${ci}-${n}.qcow2`);
        const mem = memHost(image);
        const host = new FaultHostFile(mem, n);
        const dev = await open(host);
        let acked = base.slice();
        let ackIndex = -1;
        await expect(
          run(dev, base.slice(), (m, i) => {
            acked = m;
            ackIndex = i;
          }),
        ).rejects.toThrow(/injected crash/);
        // the device refuses to go on (its in-memory metadata may be half-updated) ...
        await expect(dev.write(0, new Uint8Array(1))).rejects.toThrow(/earlier error/);
        await expect(dev.flush()).rejects.toThrow(/earlier error/);
        await dev.close(); // ... and closing releases everything without writing
        await host.close();
        await writeFile(image, mem.bytes);
        const check = await qemuImgCheck(image);
        if (check.corruptions > 0 || check.json["check-errors"]) corrupt++;
        expect({ n, corruptions: check.corruptions, errors: check.json["check-errors"] ?? 0 }).toEqual({
          n,
          corruptions: 0,
          errors: 0,
        });
        // acknowledged bytes that no later step touched read back: through our reader every
        // time, through qemu-img convert for every 4th N (spawning qemu dominates the runtime)
        const reader = await openQcow2(new MemoryHostFile(mem.bytes.slice(), image), {
          readOnly: true,
          backing: backing ? backingResolver : "none",
        });
        const ours = await reader.read(0, size);
        await reader.close();
        const expected = expectedAfterCrash(acked, ours, ackIndex);
        if (!Buffer.from(ours).equals(Buffer.from(expected))) {
          expect({ n, firstDiff: firstDiff(ours, expected) }).toEqual({ n, firstDiff: -1 });
        }
        if (n % 4 === 0 || n === total - 1) {
          const got = await qemuRaw(dir, image);
          expect({ n, sameAsOurs: Buffer.from(got).equals(Buffer.from(ours)) }).toEqual({
            n,
            sameAsOurs: true,
          });
        }
        // leaks, if any, are what `qemu-img check -r leaks` repairs
        if (check.leaks > 0 && n % 4 === 1) {
          await qemuImg(["check", "-r", "leaks", image]).catch(() => "");
          const after = await qemuImgCheck(image);
          expect(after.clean).toBe(true);
        }
        await rm(image);
      }
      expect(corrupt).toBe(0);
    }, 600_000);
  }
});
