import { open, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FaultyDevice, FileDevice, SimulatedFaultError } from "@imgpatch/disk";
import { describeWithTools, qemuImg, qemuImgCheck, qemuIo, sweepPoints, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { checkQcow2 } from "../src/check.js";
import { parseHeader } from "../src/header.js";
import { type HostFile, openQcow2, type Qcow2Device } from "../src/index.js";
import { firstDiff, qemuRaw, randomBytes } from "./helpers.js";

/**
 * Crash safety under power loss, with FaultyDevice from @imgpatch/disk: every write after the
 * N-th fails and writes not yet flushed are lost. A growable HostFile over it stands in for the
 * image file (its length follows what was written, as a file's would).
 */
class FaultyHost implements HostFile {
  constructor(
    readonly dev: FaultyDevice,
    public length: number,
  ) {}
  get name() {
    return this.dev.name;
  }
  get readOnly() {
    return false;
  }
  async read(offset: number, target: Uint8Array): Promise<number> {
    const n = Math.max(0, Math.min(target.length, this.length - offset));
    if (n > 0) await this.dev.readInto(offset, target.subarray(0, n));
    return n;
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.dev.write(offset, data);
    this.length = Math.max(this.length, offset + data.length);
  }
  async sync(): Promise<void> {
    await this.dev.flush();
  }
  async close(): Promise<void> {
    await this.dev.close();
  }
}

const K = 1024;
const M = 1024 * K;
const SIZE = 4 * M;
/** The file the image lives in is this long (sparse); the qcow2 only uses its beginning. */
const CONTAINER = 16 * M;

type Step =
  | { op: "write"; off: number; len: number; seed: number }
  | { op: "zero" | "discard"; off: number; len: number }
  | { op: "growL1"; by: number }
  | { op: "flush" };

// 512-byte clusters with 64-bit refcounts: an L2 table maps 32 KiB, a refcount block counts
// 32 KiB of file and the one-cluster refcount table 2 MiB — so this small workload allocates
// data and L2 tables, copies on write from the backing image, writes zero clusters, discards,
// grows the L1 table, adds refcount blocks and grows (moves) the refcount table.
const WORKLOAD: Step[] = [
  { op: "write", off: 1000, len: 3000, seed: 1 }, // partial clusters: COW from the backing file
  { op: "flush" },
  { op: "write", off: 100 * K + 7, len: 40 * K, seed: 2 }, // crosses L2 tables
  { op: "zero", off: 200 * K, len: 8 * K }, // zero clusters hiding backing data
  { op: "flush" },
  { op: "discard", off: 0, len: 4 * K },
  { op: "growL1", by: 300 },
  { op: "write", off: 1 * M, len: 2 * M + 300, seed: 3 }, // refcount blocks + table growth
  { op: "flush" },
  { op: "write", off: 3 * M + 11, len: 100, seed: 4 },
  { op: "zero", off: 3 * M + 512 * K + 100, len: 2 * K },
  { op: "write", off: 150 * K, len: 1500, seed: 5 }, // over data written earlier (in place)
  { op: "flush" },
];

// Extended L2 (16 KiB clusters, 512-byte subclusters): partial-subcluster copy-on-write, zero
// subclusters and zero/discarded whole clusters.
const EXTL2_WORKLOAD: Step[] = [
  { op: "write", off: 1000, len: 3000, seed: 11 },
  { op: "flush" },
  { op: "write", off: 40 * K + 7, len: 20 * K, seed: 12 },
  { op: "zero", off: 100 * K + 300, len: 6 * K },
  { op: "flush" },
  { op: "discard", off: 0, len: 16 * K },
  { op: "write", off: 64 * K + 100, len: 300, seed: 13 },
  { op: "zero", off: 200 * K, len: 32 * K },
  { op: "write", off: 1 * M, len: 200 * K + 5, seed: 14 },
  { op: "write", off: 41 * K, len: 700, seed: 15 }, // in place, partly over unallocated subclusters
  { op: "flush" },
];

describeWithTools(
  ["qemu-img", "qemu-io"],
  "crash safety with FaultyDevice (power loss after every write)",
  () => {
    let dir: string;
    let pristine: Uint8Array;
    let pristineExtL2: Uint8Array;
    let baseBytes: Uint8Array;
    /** The image and workload the next attempts use. */
    let cfg: { image: () => Uint8Array; workload: Step[] } = { image: () => pristine, workload: WORKLOAD };

    beforeAll(async () => {
      dir = await tempDir("qcow2-faulty-");
      const base = join(dir, "base.qcow2");
      await qemuImg(["create", "-q", "-f", "qcow2", base, String(SIZE)]);
      await qemuIo(base, ["write -P 0x3c 0 4M"]);
      baseBytes = await qemuRaw(dir, base);
      // made by qemu-img: with 512-byte clusters it leaves out the feature-name table so the
      // backing name fits in cluster 0
      const top = join(dir, "pristine.qcow2");
      await qemuImg([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=512,refcount_bits=64",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        top,
      ]);
      pristine = new Uint8Array(await readFile(top));
      const ext = join(dir, "pristine-extl2.qcow2");
      await qemuImg([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=16k,extended_l2=on",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        ext,
      ]);
      pristineExtL2 = new Uint8Array(await readFile(ext));
    });

    /** Run the workload on a fresh copy; returns the model as of the last acknowledged flush. */
    async function attempt(path: string, failAfter: number, mode: "power-loss" | "torn" = "power-loss") {
      await writeFile(path, cfg.image());
      const fh = await open(path, "r+");
      await fh.truncate(CONTAINER);
      await fh.close();
      const faulty = new FaultyDevice(
        await FileDevice.open(path),
        mode === "power-loss"
          ? { failAfterWrites: failAfter, dropUnflushed: true }
          : { failAfterWrites: failAfter, tornBytes: 512 }, // killed mid-write: one sector lands
      );
      const host = new FaultyHost(faulty, cfg.image().length);
      const model = baseBytes.slice();
      let acked = model.slice();
      /** Bytes touched since the last acknowledged flush: their content is not promised. */
      let unsure = new Uint8Array(SIZE);
      let dev: Qcow2Device | null = null;
      let crashed = false;
      try {
        dev = await openQcow2(host, {
          name: path,
          backing: (ref) => openQcow2(join(dir, ref.name), { readOnly: true }),
        });
        for (const s of cfg.workload) {
          if (s.op === "flush") {
            await dev.flush();
            acked = model.slice();
            unsure = new Uint8Array(SIZE);
          } else if (s.op === "growL1") {
            await dev.growL1(dev.map.l1Size + s.by);
          } else {
            unsure.fill(1, s.off, s.off + s.len);
            if (s.op === "write") {
              const data = randomBytes(s.len, s.seed);
              await dev.write(s.off, data);
              model.set(data, s.off);
            } else {
              if (s.op === "zero") await dev.writeZeroes(s.off, s.len);
              else await dev.discard(s.off, s.len);
              model.fill(0, s.off, s.off + s.len);
            }
          }
        }
        await dev.close();
      } catch (err) {
        if (!(err instanceof SimulatedFaultError)) throw err;
        crashed = true;
        // the process "dies": nothing more reaches the disk (close skips the flush after a
        // failure; it only releases the backing file), and unflushed writes are lost
        await dev?.close().catch(() => {});
        await faulty.close().catch(() => {});
      }
      return { crashed, acked, unsure, writes: faulty.writesSeen, model };
    }

    it("stop points (every one under test:full) leave no corruption, and flushed data reads back", async () => {
      const probe = await attempt(join(dir, "probe.qcow2"), Number.POSITIVE_INFINITY);
      expect(probe.crashed).toBe(false);
      const total = probe.writes;
      expect(total).toBeGreaterThan(20);
      // the uninterrupted run is clean and complete
      const full = join(dir, "probe.qcow2");
      expect((await qemuImgCheck(full)).clean).toBe(true);
      expect(firstDiff(await qemuRaw(dir, full), probe.model)).toBe(-1);
      // the workload did grow the L1 table and move the refcount table
      const before = parseHeader(pristine, "pristine");
      const after = parseHeader(new Uint8Array(await readFile(full)).subarray(0, 512), full);
      expect(after.l1Size).toBeGreaterThan(before.l1Size);
      expect(after.refcountTableOffset).not.toBe(before.refcountTableOffset);
      expect(after.refcountTableClusters).toBeGreaterThan(before.refcountTableClusters);

      let leaky = 0;
      const points = sweepPoints(total, 40);
      for (const n of points) {
        if (await verifyStop(n, total, "power-loss")) leaky++;
      }
      console.log(
        `crash test: ${points.length} of ${total + 1} stop points (0..${total} writes), ${leaky} left leaks, none corrupt`,
      );
    }, 600_000);

    it("extended L2 overlay: power loss after each write (a sample; all under test:full)", async () => {
      cfg = { image: () => pristineExtL2, workload: EXTL2_WORKLOAD };
      try {
        const probe = await attempt(join(dir, "probe-extl2.qcow2"), Number.POSITIVE_INFINITY);
        expect(probe.crashed).toBe(false);
        expect(firstDiff(await qemuRaw(dir, join(dir, "probe-extl2.qcow2")), probe.model)).toBe(-1);
        const points = sweepPoints(probe.writes, 25);
        for (const n of points) await verifyStop(n, probe.writes, "power-loss");
        console.log(
          `extended L2 crash test: ${points.length} of ${probe.writes + 1} stop points, none corrupt`,
        );
      } finally {
        cfg = { image: () => pristine, workload: WORKLOAD };
      }
    }, 600_000);

    it("a process killed in the middle of a write (one sector of it lands), every 3rd stop point (a sample; all under test:full)", async () => {
      const total = (await attempt(join(dir, "probe-torn.qcow2"), Number.POSITIVE_INFINITY, "torn")).writes;
      for (const n of sweepPoints(total, 20, 3)) await verifyStop(n, total, "torn");
    }, 600_000);

    /** Stop after write `n`: no corruption for qemu-img nor for us, acknowledged data reads back. */
    async function verifyStop(n: number, total: number, mode: "power-loss" | "torn"): Promise<boolean> {
      const path = join(dir, `crash-${mode}-${n}.qcow2`);
      const r = await attempt(path, n, mode);
      expect(r.crashed, `stop after write ${n}`).toBe(n < total);
      const q = await qemuImgCheck(path);
      expect({ n, mode, corruptions: q.corruptions, errors: q.json["check-errors"] }).toEqual({
        n,
        mode,
        corruptions: 0,
        errors: 0,
      });
      const ours = await checkQcow2(path);
      expect({ n, corruptions: ours.corruptions, leaks: ours.leaks }).toEqual({
        n,
        corruptions: 0,
        leaks: q.leaks,
      });
      // acknowledged bytes (not touched again afterwards) read back, through qemu
      const seen = await qemuRaw(dir, path);
      for (let i = 0; i < SIZE; i++) {
        if (!r.unsure[i] && seen[i] !== r.acked[i]) {
          expect.fail(`${mode}, stop after write ${n}: byte ${i} is ${seen[i]}, acknowledged ${r.acked[i]}`);
        }
      }
      // and the leaks qemu-img check -r leaks would repair, we repair
      if (q.leaks > 0 && n % 7 === 0) {
        await checkQcow2(path, { repair: "leaks" });
        expect((await qemuImgCheck(path)).clean, `repaired leaks after write ${n}`).toBe(true);
      }
      await rm(path);
      return q.leaks > 0;
    }
  },
);
