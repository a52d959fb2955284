/**
 * Committed fixtures (test-fixtures/out, made by the real tools): every ext2/3/4 filesystem —
 * bare, inside MBR/GPT partitions (RangeDevice at the partition offset) and inside qcow2 — read
 * completely and compared with its source manifest; raw ones cross-checked against debugfs.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type BlockDevice, FileDevice, RangeDevice } from "@imgpatch/disk";
import { Ext4Fs } from "@imgpatch/ext4";
import { openQcow2 } from "@imgpatch/qcow2";
import {
  DebugfsBatch,
  FIXTURES_OUT,
  fixture,
  fixtureInfo,
  fixtureManifest,
  fixtureNames,
  type Manifest,
  oracleTools,
} from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { sha256 } from "./helpers.js";

const present = existsSync(join(FIXTURES_OUT, "fixtures.json"));

interface Case {
  fixture: string;
  offset: number;
  size?: number;
  manifest: string;
}

function cases(): Case[] {
  if (!present) return [];
  const out: Case[] = [];
  for (const name of fixtureNames()) {
    const info = fixtureInfo(name);
    if (["ext2", "ext3", "ext4"].includes(info.content) && info.manifest) {
      out.push({ fixture: name, offset: info.fsOffset ?? 0, manifest: info.manifest });
    }
    for (const p of info.partitions ?? []) {
      if (["ext2", "ext3", "ext4"].includes(p.content) && p.manifest) {
        out.push({ fixture: name, offset: p.offset, size: p.size, manifest: p.manifest });
      }
    }
  }
  return out;
}

async function openFixture(c: Case): Promise<{ fs: Ext4Fs; path: string; raw: boolean }> {
  const path = await fixture(c.fixture);
  const info = fixtureInfo(c.fixture);
  let dev: BlockDevice =
    info.format === "qcow2"
      ? await openQcow2(path, { readOnly: true })
      : await FileDevice.open(path, { readOnly: true });
  if (c.offset !== 0 || c.size !== undefined)
    dev = new RangeDevice(dev, c.offset, c.size ?? dev.size - c.offset);
  return { fs: await Ext4Fs.open(dev), path, raw: info.format === "raw" };
}

async function compareManifest(fs: Ext4Fs, m: Manifest): Promise<number> {
  const seen = new Map<string, number>();
  for await (const e of fs.walk("/")) {
    if (e.path === "/lost+found" || e.path.startsWith("/lost+found/")) continue;
    seen.set(e.path, e.ino);
  }
  expect([...seen.keys()].sort()).toEqual(m.entries.map((e) => e.path).sort());
  const groups = new Map<number, number>();
  for (const e of m.entries) {
    const ctx = e.path;
    const st = await fs.lstat(e.path);
    expect({ ctx, mode: st.mode, uid: st.uid, gid: st.gid }).toEqual({
      ctx,
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
    });
    if (e.path !== "/") expect({ ctx, mtime: st.mtimeSpec.sec }).toEqual({ ctx, mtime: e.mtime.sec });
    if (e.type !== "dir") expect({ ctx, nlink: st.nlink }).toEqual({ ctx, nlink: e.nlink });
    if (e.type === "file" || e.type === "symlink")
      expect({ ctx, size: st.size }).toEqual({ ctx, size: e.size });
    if (e.sha256) expect({ ctx, sha: sha256(await fs.readFile(e.path)) }).toEqual({ ctx, sha: e.sha256 });
    if (e.target !== undefined)
      expect({ ctx, target: await fs.readlink(e.path) }).toEqual({ ctx, target: e.target });
    if (e.rdev) expect({ ctx, major: st.rdevMajor, minor: st.rdevMinor }).toEqual({ ctx, ...e.rdev });
    if (e.hardlinkGroup !== undefined) {
      const prev = groups.get(e.hardlinkGroup);
      if (prev === undefined) groups.set(e.hardlinkGroup, st.ino);
      else expect({ ctx, ino: st.ino }).toEqual({ ctx, ino: prev });
    }
    const names = (await fs.llistxattr(e.path)).sort();
    expect({ ctx, names }).toEqual({ ctx, names: Object.keys(e.xattrs).sort() });
    for (const [k, v] of Object.entries(e.xattrs)) {
      expect({ ctx, k, v: (await fs.lgetxattr(e.path, k)).toString("base64") }).toEqual({ ctx, k, v });
    }
  }
  return m.entries.length;
}

describe.skipIf(!present)("committed fixtures", () => {
  const all = cases();
  it("there are ext fixtures to read", () => {
    expect(all.length).toBeGreaterThanOrEqual(8);
  });
  for (const c of all) {
    it(`${c.fixture} @ ${c.offset}: whole tree equals ${c.manifest}`, async () => {
      const { fs, path, raw } = await openFixture(c);
      try {
        expect(fs.warnings).toEqual([]);
        const n = await compareManifest(fs, fixtureManifest(c.manifest));
        expect(n).toBeGreaterThan(10);
        if (raw && oracleTools("debugfs").ok) {
          const target = { path, offset: c.offset };
          const step = Math.max(1, Math.floor(n / 30));
          const sampled = [];
          let k = 0;
          for await (const e of fs.walk("/")) if (k++ % step === 0) sampled.push(e);
          // The sample's debugfs reads from one debugfs process (answers as from debugfsStat etc.).
          const dfs = await DebugfsBatch.read(target, {
            stat: sampled.map((e) => e.path),
            cat: sampled.filter((e) => e.stats.isFile()).map((e) => e.path),
          });
          for (const e of sampled) {
            const d = await dfs.stat(e.path);
            expect({
              p: e.path,
              ino: e.ino,
              size: e.stats.size,
              mtime: e.stats.mtimeSpec,
              crtime: e.stats.crtimeSpec,
            }).toEqual({
              p: e.path,
              ino: d.inode,
              size: d.size,
              mtime: d.mtime,
              crtime: d.crtime,
            });
            if (e.stats.isFile())
              expect(sha256(await fs.readFile(e.path))).toBe(sha256(await dfs.cat(e.path)));
          }
        }
      } finally {
        await fs.close();
      }
    });
  }
});
