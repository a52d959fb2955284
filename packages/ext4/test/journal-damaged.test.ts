/**
 * Hand-built journals (debugfs jo/jw/jc: two transactions, the second revoking a block of the
 * first) with checksums none, v1 (ext3) and v3, then damaged where recovery checks them: our
 * in-memory replay must leave the logged blocks as e2fsck -E journal_only does, or refuse with
 * a typed error where e2fsck's recovery fails.
 */
import { copyFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import {
  crc32c,
  Ext4FormatError,
  Ext4Fs,
  journalGeometry,
  journalSuperblockChecksum,
  parseJournalSuperblock,
  scanFastCommits,
} from "@imgpatch/ext4";
import { debugfs, debugfsRaw, describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { mkfs, pseudoBytes } from "./helpers.js";

const BS = 1024;
const TARGETS = [5000, 5001, 5002, 5003];

interface Built {
  img: string;
  /** Journal block (logical) → byte offset in the image. */
  at: (journalBlock: number) => Promise<number>;
  /** logdump: "type N ... at block B" for each log block, in order. */
  log: { type: number; block: number }[];
}

async function build(dir: string, name: string, fsArgs: string[], jo: string): Promise<Built> {
  const img = join(dir, `${name}.img`);
  await mkfs(img, undefined, 16, [...fsArgs, "-b", String(BS)]);
  const p3 = join(dir, `${name}.p3`);
  const p1 = join(dir, `${name}.p1`);
  await writeFile(p3, pseudoBytes(3 * BS, 7));
  await writeFile(p1, pseudoBytes(BS, 8));
  await debugfs(img, [jo, `jw -b 5000,5001,5002 ${p3}`, `jw -b 5003 -r 5000 ${p1}`, "jc"], { write: true });
  const dump = (await debugfsRaw(img, ["logdump"])).stdout.toString();
  const log = [...dump.matchAll(/type (\d+) \(.*?\) at block (\d+)/g)].map((m) => ({
    type: Number(m[1]),
    block: Number(m[2]),
  }));
  const fs = await Ext4Fs.open(await FileDevice.open(img, { readOnly: true }), { replayJournal: false });
  const ji = await fs.readInode(fs.sb.journalInum);
  const map = new Map<number, number>();
  for (let i = 0; i < 16; i++) map.set(i, (await fs.mapBlock(ji, i)).physical * BS);
  await fs.close();
  return { img, at: async (b) => map.get(b)!, log };
}

async function flip(img: string, offset: number): Promise<void> {
  const dev = await FileDevice.open(img);
  const b = await dev.read(offset, 1);
  await dev.write(offset, Uint8Array.of(b[0] ^ 0x5a));
  await dev.close();
}

/** Our replayed TARGETS and e2fsck's (journal_only, on a copy). */
async function compare(img: string): Promise<{ ours: Buffer[]; theirs: Buffer[]; replayed: unknown }> {
  const fs = await Ext4Fs.open(await FileDevice.open(img, { readOnly: true }));
  const ours = await Promise.all(TARGETS.map(async (b) => Buffer.from(await fs.device.read(b * BS, BS))));
  const replayed = fs.journal.replayed;
  await fs.close();
  const copy = `${img}.e2fsck`;
  await copyFile(img, copy);
  const r = await runTool("e2fsck", ["-y", "-E", "journal_only", copy]);
  expect(r.exitCode, r.stderr).toBeLessThan(4);
  const o = await FileDevice.open(copy, { readOnly: true });
  const theirs = await Promise.all(TARGETS.map(async (b) => Buffer.from(await o.read(b * BS, BS))));
  await o.close();
  return { ours, theirs, replayed };
}

describeWithTools(["mke2fs", "debugfs", "e2fsck"], "journal: hand-built and damaged", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("ext4-jdamage-");
  });
  const modes = [
    { name: "none", fs: ["-t", "ext4", "-O", "^metadata_csum"], jo: "jo" },
    { name: "v1", fs: ["-t", "ext3"], jo: "jo -c" },
    { name: "v3", fs: ["-t", "ext4"], jo: "jo -c" },
  ];
  const commits = (b: Built) => b.log.filter((l) => l.type === 2).map((l) => l.block);
  const descriptors = (b: Built) => b.log.filter((l) => l.type === 1).map((l) => l.block);

  for (const m of modes) {
    it(`${m.name}: intact, two transactions with a revoke, as e2fsck`, async () => {
      const b = await build(dir, `${m.name}-ok`, m.fs, m.jo);
      expect(commits(b)).toHaveLength(2);
      const r = await compare(b.img);
      // debugfs sums the revoke block into a v1 commit checksum; recovery (e2fsck's and
      // the kernel's) does not, so it ends the log before the second transaction.
      const transactions = m.name === "v1" ? 1 : 2;
      expect(r.replayed).toEqual({ transactions, blocks: 3, badChecksums: 0 });
      expect(r.ours).toEqual(r.theirs);
    });
  }

  it("v1: a logged block changed after commit ends the log before its transaction, as e2fsck", async () => {
    const b = await build(dir, "v1-data", ["-t", "ext3"], "jo -c");
    // The first transaction's first logged block follows its descriptor.
    await flip(b.img, (await b.at(descriptors(b)[0] + 1)) + 10);
    const r = await compare(b.img);
    expect(r.replayed).toEqual({ transactions: 0, blocks: 0, badChecksums: 0 });
    expect(r.ours).toEqual(r.theirs);
  });

  it("v3: a bad commit checksum drops that transaction, as e2fsck", async () => {
    const b = await build(dir, "v3-commit", ["-t", "ext4"], "jo -c");
    await flip(b.img, (await b.at(commits(b)[1])) + 200);
    const r = await compare(b.img);
    expect(r.replayed).toEqual({ transactions: 1, blocks: 3, badChecksums: 0 });
    expect(r.ours).toEqual(r.theirs);
  });

  it("v3: a logged block with a bad data checksum is not written, as e2fsck", async () => {
    const b = await build(dir, "v3-data", ["-t", "ext4"], "jo -c");
    await flip(b.img, (await b.at(descriptors(b)[0] + 2)) + 10); // 5001's copy
    const r = await compare(b.img);
    expect(r.replayed).toEqual({ transactions: 2, blocks: 2, badChecksums: 1 });
    expect(r.ours).toEqual(r.theirs);
  });

  for (const what of ["descriptor", "revoke"] as const) {
    it(`v3: a bad ${what} block tail in the newest transaction: refused (e2fsck's recovery fails)`, async () => {
      const b = await build(dir, `v3-${what}`, ["-t", "ext4"], "jo -c");
      const block = b.log.filter((l) => l.type === (what === "descriptor" ? 1 : 5)).at(-1)!.block;
      await flip(b.img, (await b.at(block)) + 300);
      const err = await Ext4Fs.open(await FileDevice.open(b.img, { readOnly: true })).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Ext4FormatError);
      expect(String(err)).toMatch(/bad checksum/);
      const copy = `${b.img}.e2fsck`;
      await copyFile(b.img, copy);
      const r = await runTool("e2fsck", ["-y", "-E", "journal_only", copy]);
      expect(r.stdout.toString() + r.stderr).toMatch(/Journal checksum error/);
    });
  }
});

describe("fast-commit area scan", () => {
  // A journal superblock with a 2-block fast-commit area at journal blocks 63..64 (last 62).
  const jsb = parseJournalSuperblock(
    (() => {
      const b = new Uint8Array(1024);
      const dv = new DataView(b.buffer);
      dv.setUint32(0, 0xc03b3998);
      dv.setUint32(4, 4);
      dv.setUint32(0xc, 1024);
      dv.setUint32(0x10, 64);
      dv.setUint32(0x14, 1);
      dv.setUint32(0x28, 0x20);
      dv.setUint32(0x54, 2);
      return b;
    })(),
  )!;

  it("locates the area after the log as jbd2 does", () => {
    expect(journalGeometry(jsb)).toEqual({ last: 62, fcFirst: 63, fcEnd: 64 });
  });

  it("a HEAD for the expected tid, tags and a TAIL whose crc matches: replay needed", async () => {
    const b = new Uint8Array(1024);
    const put = (tag: number, val: Uint8Array, at: number) => {
      b[at] = tag;
      b[at + 2] = val.length;
      b.set(val, at + 4);
      return at + 4 + val.length;
    };
    let at = put(9, Uint8Array.of(0, 0, 0, 0, 7, 0, 0, 0), 0); // HEAD, tid 7
    at = put(7, new Uint8Array(10), at); // PAD
    const tailAt = at;
    at = put(8, Uint8Array.of(7, 0, 0, 0, 0, 0, 0, 0), at);
    const crc = crc32c(0, b, 0, tailAt + 8) >>> 0;
    new DataView(b.buffer).setUint32(tailAt + 8, crc, true);
    const read = async () => b;
    expect(await scanFastCommits(jsb, read, 7)).toEqual({ replayTags: 3 });
    expect(await scanFastCommits(jsb, read, 8)).toEqual({ replayTags: 0, staleHead: 7 });
    b[tailAt + 9] ^= 1;
    expect((await scanFastCommits(jsb, read, 7)).problem).toMatch(/tail/);
  });

  it("random tag streams give a verdict or a reason, never an exception or a hang", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 2048, maxLength: 2048 }),
        fc.boolean(),
        async (bytes, head) => {
          if (head) {
            bytes[0] = 9;
            bytes[1] = 0;
          }
          const r = await scanFastCommits(
            jsb,
            async (i) => bytes.subarray((i - 63) * 1024, (i - 62) * 1024),
            5,
          );
          expect(r.replayTags).toBeGreaterThanOrEqual(0);
        },
      ),
      { numRuns: 300, seed: 77 },
    );
  });
});

/**
 * Checksum v2 journals (16-bit data checksums in 8/12-byte tags padded by 2): debugfs and
 * current kernels write v3 only, so the log is encoded here — two transactions, the second
 * revoking a block of the first — and e2fsck is the oracle: it must have replayed the new
 * contents (so the hand-made checksums are right) and our in-memory replay must equal it.
 */
describeWithTools(["mke2fs", "debugfs", "e2fsck"], "journal: hand-built checksum v2", () => {
  for (const b64 of [false, true]) {
    it(`v2 with ${b64 ? 64 : 32}-bit tags replays as e2fsck does`, async () => {
      const dir = await tempDir("ext4-jv2-");
      const img = join(dir, "v2.img");
      await mkfs(img, undefined, 16, ["-t", "ext4", "-b", String(BS)]);
      const fs0 = await Ext4Fs.open(await FileDevice.open(img, { readOnly: true }));
      const ji = await fs0.readInode(fs0.sb.journalInum);
      const phys: number[] = [];
      for (let i = 0; i < 12; i++) phys.push((await fs0.mapBlock(ji, i)).physical);
      const jsb = fs0.journal.superblock!;
      await fs0.close();
      const raw = Buffer.from(jsb.raw);
      raw.writeUInt32BE(5, 0x18); // s_sequence
      raw.writeUInt32BE(1, 0x1c); // s_start
      raw.writeUInt32BE(0, 0x24);
      raw.writeUInt32BE(0x1 | 0x8 | (b64 ? 0x2 : 0), 0x28); // revoke, csum v2, 64-bit
      raw[0x50] = 4; // crc32c
      raw.writeUInt32BE(journalSuperblockChecksum(raw), 0xfc);
      const seed = crc32c(0xffffffff, raw.subarray(0x30, 0x40));
      const tail = (b: Buffer) =>
        b.writeUInt32BE(crc32c(crc32c(seed, b, 0, BS - 4), new Uint8Array(4)) >>> 0, BS - 4);
      const header = (type: number, seq: number) => {
        const b = Buffer.alloc(BS);
        b.writeUInt32BE(0xc03b3998, 0);
        b.writeUInt32BE(type, 4);
        b.writeUInt32BE(seq, 8);
        return b;
      };
      const dataSum = (seq: number, d: Buffer) => {
        const s = Buffer.alloc(4);
        s.writeUInt32BE(seq);
        return crc32c(crc32c(seed, s), d) & 0xffff;
      };
      const descriptor = (seq: number, targets: number[], data: Buffer[]) => {
        const b = header(1, seq);
        let off = 12;
        targets.forEach((t, i) => {
          b.writeUInt32BE(t, off);
          b.writeUInt16BE(dataSum(seq, data[i]), off + 4);
          const flags = (i > 0 ? 2 : 0) | (i === targets.length - 1 ? 8 : 0);
          b.writeUInt16BE(flags, off + 6);
          off += b64 ? 14 : 10;
          if (i === 0) off += 16; // the UUID after the first tag
        });
        tail(b);
        return b;
      };
      const commit = (seq: number, sec: number) => {
        const b = header(2, seq);
        b.writeUInt32BE(sec, 0x34);
        b.writeUInt32BE(crc32c(seed, b) >>> 0, 16);
        return b;
      };
      const d = [pseudoBytes(BS, 21), pseudoBytes(BS, 22), pseudoBytes(BS, 23)];
      const revoke = header(5, 6);
      revoke.writeUInt32BE(16 + (b64 ? 8 : 4), 12);
      if (b64) revoke.writeUInt32BE(5001, 20);
      else revoke.writeUInt32BE(5001, 16);
      tail(revoke);
      const log = [
        descriptor(5, [5000, 5001], [d[0], d[1]]),
        d[0],
        d[1],
        commit(5, 1000),
        descriptor(6, [5002], [d[2]]),
        d[2],
        revoke,
        commit(6, 1001),
      ];
      const dev = await FileDevice.open(img);
      await dev.write(phys[0] * BS, raw);
      for (let i = 0; i < log.length; i++) await dev.write(phys[i + 1] * BS, log[i]);
      await dev.close();
      await debugfs(img, ["feature needs_recovery"], { write: true });
      const r = await compare(img);
      expect(r.replayed).toEqual({ transactions: 2, blocks: 2, badChecksums: 0 });
      expect(r.theirs[0]).toEqual(d[0]); // e2fsck accepted the hand-made checksums
      expect(r.theirs[2]).toEqual(d[2]);
      expect(r.theirs[1]).not.toEqual(d[1]); // revoked
      expect(r.ours).toEqual(r.theirs);
    });
  }
});
