import { open, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type BlockDevice,
  CountingDevice,
  FaultyDevice,
  FileDevice,
  IoError,
  MemoryDevice,
  OutOfRangeError,
  RangeDevice,
  ReadOnlyError,
  SimulatedFaultError,
} from "../src/index.js";

const MiB = 1024 * 1024;
const bytes = (...b: number[]) => Uint8Array.from(b);

/** Behaviour every BlockDevice shares, run against each implementation. */
function contractTests(make: (size: number) => Promise<BlockDevice>) {
  it("round-trips writes and reads at arbitrary offsets", async () => {
    const d = await make(64 * 1024);
    await d.write(1000, bytes(1, 2, 3));
    await d.write(65535, bytes(9));
    expect(await d.read(999, 5)).toEqual(bytes(0, 1, 2, 3, 0));
    const into = new Uint8Array(2);
    await d.readInto(65534, into);
    expect(into).toEqual(bytes(0, 9));
    await d.close();
  });

  it("refuses ranges past the end or invalid, with OutOfRangeError naming the offset", async () => {
    const d = await make(4096);
    await expect(d.read(4095, 2)).rejects.toBeInstanceOf(OutOfRangeError);
    const err = await d.write(4000, new Uint8Array(200)).catch((e) => e);
    expect(err).toBeInstanceOf(OutOfRangeError);
    expect(err.offset).toBe(4000);
    await expect(d.read(-1, 1)).rejects.toBeInstanceOf(OutOfRangeError);
    await expect(d.read(Number.NaN, 1)).rejects.toBeInstanceOf(OutOfRangeError);
    await expect(d.read(0.5, 1)).rejects.toBeInstanceOf(OutOfRangeError);
    await expect(d.writeZeroes(0, 4097)).rejects.toBeInstanceOf(OutOfRangeError);
    expect(await d.read(4096, 0)).toEqual(new Uint8Array(0));
    await d.close();
  });

  it("writeZeroes and discard read back as zeros; mapExtents covers the range", async () => {
    const d = await make(3 * MiB);
    await d.write(0, new Uint8Array(3 * MiB).fill(7));
    await d.writeZeroes(100, 2 * MiB + 5);
    await d.discard(2 * MiB + 200, 10);
    const all = await d.read(0, 3 * MiB);
    expect(all[99]).toBe(7);
    expect(all.subarray(100, 2 * MiB + 105).every((b) => b === 0)).toBe(true);
    expect(all[2 * MiB + 105]).toBe(7);
    expect(all.subarray(2 * MiB + 200, 2 * MiB + 210).every((b) => b === 0)).toBe(true);
    const ext = await d.mapExtents(10, 1000);
    expect(ext[0].offset).toBe(10);
    expect(ext.reduce((n, e) => n + e.length, 0)).toBe(1000);
    await d.close();
  });

  it("fails every call after close", async () => {
    const d = await make(4096);
    await d.close();
    await d.close(); // idempotent
    await expect(d.read(0, 1)).rejects.toThrow(/closed/);
    await expect(d.flush()).rejects.toThrow(/closed/);
  });
}

describe("MemoryDevice", () => {
  contractTests(async (size) => new MemoryDevice(size));
  it("read-only refuses writes with ReadOnlyError", async () => {
    const d = new MemoryDevice(bytes(1, 2, 3), { readOnly: true, name: "ro" });
    await expect(d.write(0, bytes(1))).rejects.toBeInstanceOf(ReadOnlyError);
    await expect(d.writeZeroes(0, 1)).rejects.toBeInstanceOf(ReadOnlyError);
    await expect(d.discard(0, 1)).rejects.toBeInstanceOf(ReadOnlyError);
    expect(await d.read(0, 3)).toEqual(bytes(1, 2, 3));
  });
});

describe("FileDevice", () => {
  let n = 0;
  const newPath = async () => join(await tempDir("disk-file-"), `f${n++}.img`);
  contractTests(async (size) => FileDevice.open(await newPath(), { create: { size } }));

  it("creates sparse files and reopens them with their size", async () => {
    const path = await newPath();
    const d = await FileDevice.open(path, { create: { size: 1024 * MiB } });
    await d.write(512 * MiB, bytes(1));
    await d.close();
    const st = await stat(path);
    expect(st.size).toBe(1024 * MiB);
    expect(st.blocks * 512).toBeLessThan(MiB); // sparse: only the written block is allocated
    const r = await FileDevice.open(path, { readOnly: true, sectorSize: 4096 });
    expect([r.size, r.readOnly, r.sectorSize]).toEqual([1024 * MiB, true, 4096]);
    expect(await r.read(512 * MiB, 2)).toEqual(bytes(1, 0));
    await expect(r.write(0, bytes(1))).rejects.toBeInstanceOf(ReadOnlyError);
    await r.close();
  });

  it("wraps OS errors in IoError with the file name", async () => {
    const path = await newPath();
    const missing = await FileDevice.open(path).catch((e) => e);
    expect(missing).toBeInstanceOf(IoError);
    expect(missing.message).toContain(path);
    expect(missing.message).toContain("ENOENT");
    await writeFile(path, "x");
    await expect(FileDevice.open(path, { create: { size: 10 } })).rejects.toThrow(/EEXIST/);
  });

  it("a file that shrinks underneath is an IoError at the offset, not silent zeros", async () => {
    const path = await newPath();
    const d = await FileDevice.open(path, { create: { size: 8192 } });
    await truncate(path, 4096);
    const err = await d.read(4000, 1000).catch((e) => e);
    expect(err).toBeInstanceOf(IoError);
    expect(err.offset).toBe(4096);
    expect(err.message).toMatch(/unexpected end of file/);
    await d.close();
  });

  describe("early writeback", () => {
    // The FileHandle prototype, to watch and fail fdatasync.
    const handleProto = async () => {
      const fh = await open(await newPath(), "w");
      const proto = Object.getPrototypeOf(fh) as { datasync: () => Promise<void> };
      await fh.close();
      return proto;
    };
    afterEach(() => vi.restoreAllMocks());

    it("starts an fdatasync in the background once writebackBytes were written, flushes again at close", async () => {
      const spy = vi.spyOn(await handleProto(), "datasync");
      const path = await newPath();
      const d = await FileDevice.open(path, { create: { size: 4 * MiB }, writebackBytes: 64 * 1024 });
      const chunk = new Uint8Array(32 * 1024).fill(7);
      await d.write(0, chunk);
      expect(spy).toHaveBeenCalledTimes(0);
      for (let i = 1; i < 10; i++) await d.write(i * chunk.length, chunk);
      const early = spy.mock.calls.length;
      expect(early).toBeGreaterThanOrEqual(1);
      expect(early).toBeLessThanOrEqual(5); // one in flight at a time, per 64 KiB at most
      await d.close(); // waits for the background one, then syncs what came after it
      expect(spy.mock.calls.length).toBe(early + 1);
      const r = await FileDevice.open(path, { readOnly: true });
      expect((await r.read(0, 10 * chunk.length)).every((b) => b === 7)).toBe(true);
      await r.close();
    });

    it("writebackBytes: 0 syncs only when asked", async () => {
      const spy = vi.spyOn(await handleProto(), "datasync");
      const d = await FileDevice.open(await newPath(), { create: { size: 8 * MiB }, writebackBytes: 0 });
      await d.write(0, new Uint8Array(8 * MiB));
      expect(spy).toHaveBeenCalledTimes(0);
      await d.flush();
      expect(spy).toHaveBeenCalledTimes(1);
      await d.close();
    });

    it("a failed background fdatasync is reported by the next flush, as an IoError naming the file", async () => {
      const proto = await handleProto();
      const real = proto.datasync;
      let failures = 1;
      vi.spyOn(proto, "datasync").mockImplementation(function (this: unknown) {
        if (failures-- > 0) return Promise.reject(Object.assign(new Error("i/o error"), { code: "EIO" }));
        return real.call(this);
      });
      const path = await newPath();
      const d = await FileDevice.open(path, { create: { size: 4 * MiB }, writebackBytes: 4096 });
      await d.write(0, new Uint8Array(8192));
      const err = await d.flush().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IoError);
      expect((err as IoError).message).toMatch(/EIO/);
      expect((err as IoError).message).toContain(path);
      // Reported once; the device goes on (the caller decides what the failure means).
      await d.flush();
      await d.close();
    });
  });

  it("moves large buffers in one call", async () => {
    const path = await newPath();
    const d = await FileDevice.open(path, { create: { size: 16 * MiB } });
    const data = new Uint8Array(16 * MiB);
    for (let i = 0; i < data.length; i += 4096) data[i] = (i >> 12) & 0xff;
    await d.write(0, data);
    await d.flush();
    expect(Buffer.from(await d.read(0, 16 * MiB)).equals(data)).toBe(true);
    await d.close();
  });
});

describe("RangeDevice", () => {
  contractTests(async (size) => new RangeDevice(new MemoryDevice(size + 3000), 1000, size));

  it("translates offsets, bounds every access to the view and inherits read-only", async () => {
    const parent = new MemoryDevice(10_000, { name: "disk" });
    const view = new RangeDevice(parent, 4096, 1024);
    expect(view.name).toBe("disk[4096+1024]");
    await view.write(0, bytes(5, 6));
    expect(parent.bytes.subarray(4096, 4098)).toEqual(bytes(5, 6));
    await expect(view.read(1023, 2)).rejects.toBeInstanceOf(OutOfRangeError);
    await expect(view.write(1024, bytes(1))).rejects.toBeInstanceOf(OutOfRangeError);
    expect(await view.mapExtents(8, 16)).toEqual([{ offset: 8, length: 16, kind: "data" }]);
    await view.close();
    expect(await parent.read(4096, 1)).toEqual(bytes(5)); // parent still open
    const ro = new RangeDevice(new MemoryDevice(100, { readOnly: true }), 0, 50);
    expect(ro.readOnly).toBe(true);
    expect(new RangeDevice(parent, 0, 10, { readOnly: true }).readOnly).toBe(true);
  });

  it("refuses views outside the parent", () => {
    const parent = new MemoryDevice(1000);
    expect(() => new RangeDevice(parent, 900, 200)).toThrow(OutOfRangeError);
    expect(() => new RangeDevice(parent, -1, 10)).toThrow(OutOfRangeError);
    expect(() => new RangeDevice(parent, 0, 1.5)).toThrow(OutOfRangeError);
  });

  it("random I/O through a view equals the same I/O on the parent at an offset (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ off: fc.nat({ max: 4000 }), data: fc.uint8Array({ minLength: 1, maxLength: 96 }) }),
          {
            maxLength: 20,
          },
        ),
        async (ops) => {
          const a = new MemoryDevice(8192);
          const b = new MemoryDevice(4096);
          const view = new RangeDevice(a, 2048, 4096);
          for (const op of ops) {
            const len = Math.min(op.data.length, 4096 - op.off);
            await view.write(op.off, op.data.subarray(0, len));
            await b.write(op.off, op.data.subarray(0, len));
          }
          expect(Buffer.from(a.bytes.subarray(2048, 6144)).equals(b.bytes)).toBe(true);
          expect(a.bytes.subarray(0, 2048).every((x) => x === 0)).toBe(true);
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe("CountingDevice", () => {
  contractTests(async (size) => new CountingDevice(new MemoryDevice(size)));

  it("counts operations and bytes, logs them on request, and resets", async () => {
    const c = new CountingDevice(new MemoryDevice(MiB), { log: true });
    await c.read(0, 100);
    await c.readInto(200, new Uint8Array(50));
    await c.write(10, new Uint8Array(7));
    await c.writeZeroes(0, 4096);
    await c.discard(8192, 512);
    await c.mapExtents(0, 10);
    await c.flush();
    await expect(c.read(MiB, 1)).rejects.toBeInstanceOf(OutOfRangeError); // failures are not counted
    expect(c.counts).toEqual({
      reads: 2,
      bytesRead: 150,
      writes: 1,
      bytesWritten: 7,
      zeroWrites: 1,
      bytesZeroed: 4096,
      discards: 1,
      bytesDiscarded: 512,
      flushes: 1,
      mapExtents: 1,
    });
    expect(c.log.map((r) => r.op)).toEqual([
      "read",
      "read",
      "write",
      "writeZeroes",
      "discard",
      "mapExtents",
      "flush",
    ]);
    c.reset();
    expect(c.counts.reads).toBe(0);
    expect(c.log).toEqual([]);
    expect([c.size, c.name, c.readOnly, c.sectorSize]).toEqual([MiB, "memory", false, 512]);
  });
});

describe("FaultyDevice", () => {
  contractTests(
    async (size) => new FaultyDevice(new MemoryDevice(size), { failAfterWrites: Number.POSITIVE_INFINITY }),
  );
  describe("dropUnflushed", () => {
    contractTests(
      async (size) =>
        new FaultyDevice(new MemoryDevice(size), {
          failAfterWrites: Number.POSITIVE_INFINITY,
          dropUnflushed: true,
        }),
    );
  });

  it("dropUnflushed: writes are visible but only reach the inner device on flush; a fault loses them", async () => {
    const inner = new MemoryDevice(64);
    const f = new FaultyDevice(inner, { failAfterWrites: 3, dropUnflushed: true });
    await f.write(0, bytes(1, 2, 3));
    await f.flush();
    expect(inner.bytes.subarray(0, 3)).toEqual(bytes(1, 2, 3));
    await f.write(10, bytes(4, 5));
    await f.writeZeroes(1, 1);
    expect(f.unflushedWrites).toBe(2);
    expect(await f.read(0, 12)).toEqual(bytes(1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 5)); // reads see them
    expect(inner.bytes.subarray(0, 12)).toEqual(bytes(1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0)); // disk does not
    await expect(f.write(20, bytes(9))).rejects.toBeInstanceOf(SimulatedFaultError);
    expect(f.unflushedWrites).toBe(0);
    await f.close();
    expect(inner.bytes.subarray(0, 21)).toEqual(Uint8Array.from([1, 2, 3, ...new Array(18).fill(0)]));
  });

  it("dropUnflushed: invalid and read-only writes still fail as the inner device fails them", async () => {
    const f = new FaultyDevice(new MemoryDevice(16), { failAfterWrites: 10, dropUnflushed: true });
    await expect(f.write(15, bytes(1, 2))).rejects.toBeInstanceOf(OutOfRangeError);
    const ro = new FaultyDevice(new MemoryDevice(16, { readOnly: true }), {
      failAfterWrites: 10,
      dropUnflushed: true,
    });
    await expect(ro.write(0, bytes(1))).rejects.toBeInstanceOf(ReadOnlyError);
    const ok = new FaultyDevice(new MemoryDevice(16), { failAfterWrites: 10, dropUnflushed: true });
    await ok.write(0, bytes(7));
    await ok.close(); // an orderly close keeps held-back writes
    expect((ok.inner as MemoryDevice).bytes[0]).toBe(7);
  });

  it("lets N writes through, then fails this and every later modification", async () => {
    const inner = new MemoryDevice(4096);
    const f = new FaultyDevice(inner, { failAfterWrites: 2 });
    await f.write(0, bytes(1));
    await f.writeZeroes(1, 1);
    const err = await f.write(2, bytes(3)).catch((e) => e);
    expect(err).toBeInstanceOf(SimulatedFaultError);
    expect(err).toBeInstanceOf(IoError);
    expect(err.offset).toBe(2);
    expect(f.faulted).toBe(true);
    await expect(f.discard(0, 1)).rejects.toBeInstanceOf(SimulatedFaultError);
    await expect(f.flush()).rejects.toBeInstanceOf(SimulatedFaultError);
    expect(await f.read(0, 3)).toEqual(bytes(1, 0, 0)); // reads still work
    expect(f.writesSeen).toBe(4);
  });

  it("models a torn write and can leave flush working", async () => {
    const inner = new MemoryDevice(4096);
    const f = new FaultyDevice(inner, { failAfterWrites: 0, tornBytes: 2, failFlushAfterFault: false });
    await expect(f.write(10, bytes(1, 2, 3, 4))).rejects.toBeInstanceOf(SimulatedFaultError);
    expect(inner.bytes.subarray(10, 14)).toEqual(bytes(1, 2, 0, 0));
    await expect(f.write(20, bytes(1, 2, 3))).rejects.toBeInstanceOf(SimulatedFaultError);
    expect(inner.bytes[20]).toBe(0); // only the first failing write is torn
    await f.flush();
  });

  it("supports the sweep pattern: count writes, then fail at each point", async () => {
    const edit = async (d: BlockDevice) => {
      for (let i = 0; i < 5; i++) await d.write(i * 10, bytes(i + 1));
    };
    const probe = new FaultyDevice(new MemoryDevice(100), { failAfterWrites: Number.POSITIVE_INFINITY });
    await edit(probe);
    expect(probe.writesSeen).toBe(5);
    for (let n = 0; n <= probe.writesSeen; n++) {
      const inner = new MemoryDevice(100);
      const f = new FaultyDevice(inner, { failAfterWrites: n });
      const outcome = await edit(f).then(
        () => "ok",
        (e) => (e instanceof SimulatedFaultError ? "fault" : e),
      );
      expect(outcome).toBe(n === 5 ? "ok" : "fault");
      expect([0, 10, 20, 30, 40].filter((o) => inner.bytes[o] !== 0)).toHaveLength(n);
    }
    expect(() => new FaultyDevice(new MemoryDevice(1), { failAfterWrites: -1 })).toThrow(RangeError);
  });
});
