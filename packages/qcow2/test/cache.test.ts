import { describe, expect, it } from "vitest";
import { createQcow2, MemoryHostFile, openQcow2 } from "../src/index.js";
import { expectSameBytes, randomBytes } from "./helpers.js";

const K = 1024;
const M = 1024 * K;

describe("bounded metadata caches and coalesced I/O", () => {
  it("keeps at most the configured number of L2 tables and refcount blocks, whatever the image size", async () => {
    const host = new MemoryHostFile(new Uint8Array(0), "bounded.qcow2");
    const cs = 4096; // one L2 table maps 2 MiB; one refcount block counts 8 MiB of clusters
    await (await createQcow2(host, { size: 512 * M, clusterSize: cs })).close();
    const dev = await openQcow2(host, { l2CacheBytes: 4 * cs, refcountCacheBytes: 2 * cs });
    const writes: [number, Uint8Array][] = [];
    for (let i = 0; i < 200; i++) {
      const off = ((i * 7919) % 256) * 2 * M + ((i * 131) % 2000) * 3;
      const data = randomBytes(5000, i + 1);
      writes.push([off, data]);
      await dev.write(off, data);
      expect(dev.map.l2Cache.size).toBeLessThanOrEqual(dev.map.l2Cache.capacity);
      expect(dev.refcounts!.cache.size).toBeLessThanOrEqual(dev.refcounts!.cache.capacity);
    }
    await dev.close();
    const ro = await openQcow2(host, { readOnly: true, l2CacheBytes: 2 * cs });
    const latest = new Map<number, Uint8Array>();
    for (const [off, data] of writes) latest.set(off, data);
    for (const [off, data] of latest) {
      expectSameBytes(await ro.read(off, data.length), data, `@${off}`);
      expect(ro.map.l2Cache.size).toBeLessThanOrEqual(2);
    }
    // evicted tables were reloaded from disk, so they really were written back
    expect(ro.map.l2Cache.loads).toBeGreaterThan(100);
    await ro.close();
  });

  it("reads host-contiguous clusters with a single read and writes them with a single write", async () => {
    const host = new MemoryHostFile(new Uint8Array(0), "seq.qcow2");
    const dev = await createQcow2(host, { size: 64 * M, clusterSize: 65536 });
    const data = randomBytes(16 * M, 3);
    let writes = 0;
    const w = host.write.bind(host);
    host.write = async (o, d) => {
      writes++;
      return w(o, d);
    };
    await dev.write(0, data);
    expect(writes).toBe(1); // no metadata yet: it is cached until flush
    await dev.close();
    const ro = await openQcow2(host, { readOnly: true });
    let reads = 0;
    const r = host.read.bind(host);
    host.read = async (o, t) => {
      reads++;
      return r(o, t);
    };
    const out = await ro.read(0, 16 * M);
    expectSameBytes(out, data);
    expect(reads).toBeLessThanOrEqual(2); // the L2 table, then one 16 MiB data read
    await ro.close();
  });

  it("refcount widths 1..64 count allocations exactly", async () => {
    for (const bits of [1, 2, 4, 8, 16, 32, 64]) {
      const host = new MemoryHostFile(new Uint8Array(0), `rc${bits}.qcow2`);
      const dev = await createQcow2(host, { size: 8 * M, clusterSize: 512, refcountBits: bits });
      await dev.write(0, randomBytes(100 * K, bits));
      await dev.discard(0, 50 * K);
      await dev.flush();
      const rc = dev.refcounts!;
      let used = 0;
      for (let c = 0; c < host.length / 512; c++) used += await rc.get(c);
      // header + refcount table + refcount blocks + L1 (4 clusters map 8 MiB) + 4 L2 tables
      // + the 50 KiB of data that was not discarded
      const blocks = rc.tableEntries().filter((e) => e !== 0).length;
      expect({ bits, used }).toEqual({ bits, used: 1 + rc.tableLocation.clusters + blocks + 4 + 4 + 100 });
      await dev.close();
    }
  });
});
