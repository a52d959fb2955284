// The metadata buffer cache: bounded clean memory, no lost or stale writes, CRC and LSN stamping.
import { MemoryDevice } from "@imgpatch/disk";
import { expect, it } from "vitest";
import { BufCache, xfsCrc } from "../src/buf.js";
import { be64big, le32 } from "../src/bytes.js";

it("keeps clean memory bounded and still writes a buffer that was evicted before it was changed", async () => {
  const dev = new MemoryDevice(1 << 20);
  const bufs = new BufCache(dev, { crc: true, lsn: 0x5_0000_0010n, maxCleanBytes: 8 * 1024 });
  const held = await bufs.read(0, 1024);
  for (let i = 1; i < 64; i++) await bufs.read(i * 1024, 1024);
  // `held` was evicted; a later read is a different (clean, older) copy.
  const again = await bufs.read(0, 1024);
  expect(again).not.toBe(held);
  held.data[100] = 7;
  bufs.dirty(held, { crcOffset: 4, lsnOffset: 8 });
  await bufs.commit();
  const disk = await dev.read(0, 1024);
  expect(disk[100]).toBe(7);
  expect(be64big(disk, 8)).toBe(0x5_0000_0010n);
  expect(le32(disk, 4)).toBe(xfsCrc(disk, 4));
  expect(bufs.reads).toBeLessThanOrEqual(65);
});

it("refuses two changed copies of one block, and forgets freed blocks", async () => {
  const dev = new MemoryDevice(1 << 20);
  const bufs = new BufCache(dev, { crc: false, maxCleanBytes: 1024 });
  const a = await bufs.read(0, 1024);
  await bufs.read(1024, 1024);
  await bufs.read(2048, 1024);
  const b = await bufs.read(0, 1024);
  bufs.dirty(b);
  expect(() => bufs.dirty(a)).toThrow(/two changed buffers/);
  const c = bufs.fresh(4096, 1024);
  c.data.fill(9);
  bufs.dirty(c);
  bufs.forget(4096);
  await bufs.commit();
  expect((await dev.read(4096, 1024))[0]).toBe(0);
});
