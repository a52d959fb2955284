/** UndoLog / UndoDevice / rollbackUndo: a failed or crashed in-place run is put back byte for byte. */
import { createHash, randomBytes } from "node:crypto";
import { appendFile, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import {
  FaultyDevice,
  FileDevice,
  FormatError,
  readUndoHeader,
  rollbackUndo,
  SimulatedFaultError,
  UndoDevice,
  UndoLog,
  UndoPendingError,
  undoPathFor,
} from "../src/index.js";

const SIZE = 1024 * 1024 + 3000; // not a whole number of chunks
const sha = async (p: string) =>
  createHash("sha256")
    .update(await readFile(p))
    .digest("hex");
const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

type Op = { kind: "write" | "zero" | "discard"; offset: number; length: number; seed: number };

const opArb = fc.record({
  kind: fc.constantFrom("write", "write", "zero", "discard") as fc.Arbitrary<Op["kind"]>,
  offset: fc.integer({ min: 0, max: SIZE - 1 }),
  length: fc.integer({ min: 1, max: 200_000 }),
  seed: fc.integer({ min: 0, max: 255 }),
});

async function apply(
  dev: { write: FileDevice["write"]; writeZeroes: FileDevice["writeZeroes"]; discard: FileDevice["discard"] },
  op: Op,
) {
  const length = Math.min(op.length, SIZE - op.offset);
  if (op.kind === "write") await dev.write(op.offset, new Uint8Array(length).fill(op.seed));
  else if (op.kind === "zero") await dev.writeZeroes(op.offset, length);
  else await dev.discard(op.offset, length);
}

describe("undo log", () => {
  let dir: string;
  let n = 0;
  beforeAll(async () => {
    dir = await tempDir("undo-");
  });
  async function image(): Promise<{ path: string; sum: string }> {
    const path = join(dir, `img-${n++}.raw`);
    await writeFile(path, randomBytes(SIZE));
    return { path, sum: await sha(path) };
  }

  it("a write failure midway (also torn, also with lost unflushed writes) rolls back byte-identical", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 12 }),
        fc.integer({ min: 0, max: 5000 }),
        fc.boolean(),
        async (ops, failAfter, torn, dropUnflushed) => {
          const { path, sum } = await image();
          const log = await UndoLog.create(path, SIZE);
          const faulty = new FaultyDevice(await FileDevice.open(path), {
            failAfterWrites: failAfter,
            tornBytes: torn,
            dropUnflushed,
          });
          const dev = new UndoDevice(faulty, log);
          let failed = false;
          try {
            for (const op of ops) await apply(dev, op);
            await dev.flush();
          } catch (err) {
            expect(err).toBeInstanceOf(SimulatedFaultError);
            failed = true;
          }
          await dev.close();
          await log.close();
          expect(failed).toBe(failAfter < ops.length);
          const r = await rollbackUndo(path);
          expect(r.size).toBe(SIZE);
          expect(await sha(path)).toBe(sum);
          expect(await exists(undoPathFor(path))).toBe(false);
        },
      ),
      { numRuns: 40 },
    );
  });

  it("crash-point sweep: a crash at every write of a run (killed or power loss) rolls back byte-identical", async () => {
    // A run of overlapping writes, zeroes and discards with a flush every few operations (several
    // commits), crashed before each of its image writes in turn.
    const ops: Op[] = fc.sample(opArb, { numRuns: 24, seed: 7 });
    const run = async (dev: UndoDevice) => {
      for (let i = 0; i < ops.length; i++) {
        await apply(dev, ops[i]!);
        if (i % 5 === 4) await dev.flush();
      }
      await dev.flush();
    };
    const count = await image();
    const counter = new FaultyDevice(await FileDevice.open(count.path), { failAfterWrites: Infinity });
    const countLog = await UndoLog.create(count.path, SIZE);
    const counted = new UndoDevice(counter, countLog);
    await run(counted);
    await counted.close();
    await countLog.discard();
    const writes = counter.writesSeen;
    const flushes = Math.floor(ops.length / 5) + 1;
    expect(counted.commits).toBe(flushes); // one undo append + fdatasync per flush, not per write
    expect(countLog.syncs).toBeLessThanOrEqual(flushes);
    expect(writes).toBeGreaterThanOrEqual(ops.length);
    for (let k = 0; k <= writes; k++) {
      for (const dropUnflushed of [false, true]) {
        const { path, sum } = await image();
        const log = await UndoLog.create(path, SIZE);
        const faulty = new FaultyDevice(await FileDevice.open(path), {
          failAfterWrites: k,
          tornBytes: 777,
          dropUnflushed,
        });
        const dev = new UndoDevice(faulty, log);
        await run(dev).then(
          () => expect(k).toBe(writes),
          (err) => expect(err).toBeInstanceOf(SimulatedFaultError),
        );
        await dev.close();
        await log.close(); // the process dies here: the undo file stays
        await rollbackUndo(path);
        expect(await sha(path), `crash before write ${k}${dropUnflushed ? " (power loss)" : ""}`).toBe(sum);
      }
    }
  });

  it("success: discard leaves the edits and no undo file", async () => {
    const { path, sum } = await image();
    const log = await UndoLog.create(path, SIZE);
    const dev = new UndoDevice(await FileDevice.open(path), log);
    await dev.write(5, new Uint8Array([1, 2, 3]));
    await dev.write(70_000, new Uint8Array(100_000).fill(7));
    await dev.write(6, new Uint8Array([9])); // same chunk again: not saved twice
    expect(log.records).toBe(0); // held until the flush
    expect([...(await dev.read(5, 3))]).toEqual([1, 9, 3]); // reads see held writes
    await dev.flush();
    // One append and one fdatasync of the undo file for the whole flush, not one per write.
    expect(log.records).toBe(1 + 2);
    expect([log.appends, log.syncs, dev.commits]).toEqual([1, 1, 1]);
    await dev.close();
    await log.discard();
    expect(await exists(undoPathFor(path))).toBe(false);
    expect(await sha(path)).not.toBe(sum);
    expect([...(await readFile(path)).subarray(5, 8)]).toEqual([1, 9, 3]);
  });

  it("a file that grew (qcow2 allocating clusters) is truncated back; a torn last record is ignored", async () => {
    const { path, sum } = await image();
    const log = await UndoLog.create(path, SIZE, { chunkSize: 4096 });
    const fh = await FileDevice.open(path);
    const readOriginal = (o: number, t: Uint8Array) => fh.readInto(o, t);
    await log.preserve(SIZE - 10, 10, readOriginal);
    await log.preserve(100, 5000, readOriginal); // two 4 KiB chunks
    await log.preserve(SIZE + 10, 4096, readOriginal); // past the original end: nothing to save
    expect(log.records).toBe(3);
    await fh.write(SIZE - 10, new Uint8Array(10).fill(1));
    await fh.write(100, new Uint8Array(5000).fill(2));
    await fh.close();
    await appendFile(path, new Uint8Array(200_000).fill(3)); // growth
    await log.close();
    // a crash while appending a record: a partial record at the end
    await appendFile(undoPathFor(path), Buffer.from("UREC\x00\x10\x00\x00garbage"));
    const r = await rollbackUndo(path);
    expect(r.records).toBe(3);
    expect(r.ignoredBytes).toBeGreaterThan(0);
    expect((await stat(path)).size).toBe(SIZE);
    expect(await sha(path)).toBe(sum);
  });

  it("a record whose data was damaged stops the replay there (no garbage written)", async () => {
    const { path } = await image();
    const log = await UndoLog.create(path, SIZE, { chunkSize: 4096 });
    const fh = await FileDevice.open(path);
    const original = await fh.read(0, 8192);
    await log.preserve(0, 8192, (o, t) => fh.readInto(o, t));
    await fh.write(0, new Uint8Array(8192).fill(0xee));
    await fh.close();
    await log.close();
    const undo = await readFile(undoPathFor(path));
    undo[64 + 24 + 4096 + 24 + 10] ^= 0xff; // inside the second record's data
    await writeFile(undoPathFor(path), undo);
    const r = await rollbackUndo(path);
    expect(r.records).toBe(1);
    const now = await readFile(path);
    expect(now.subarray(0, 4096)).toEqual(Buffer.from(original.subarray(0, 4096)));
    expect(now.subarray(4096, 8192).every((b) => b === 0xee)).toBe(true);
  });

  it("refuses a second log while one is pending; bad undo files are typed errors", async () => {
    const { path } = await image();
    const log = await UndoLog.create(path, SIZE);
    await expect(UndoLog.create(path, SIZE)).rejects.toBeInstanceOf(UndoPendingError);
    expect(await readUndoHeader(undoPathFor(path))).toEqual({ originalSize: SIZE, chunkSize: 65536 });
    await log.close();
    const undo = await readFile(undoPathFor(path));
    undo[20] ^= 1; // original size, covered by the header checksum
    await writeFile(undoPathFor(path), undo);
    await expect(rollbackUndo(path)).rejects.toBeInstanceOf(FormatError);
    await writeFile(undoPathFor(path), "not an undo file");
    await expect(rollbackUndo(path)).rejects.toThrow(/not a usable undo file/);
  });
});
