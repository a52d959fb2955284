/**
 * Shared pieces of the editor tests: images made by mke2fs, a scripted edit scenario with the
 * state it must leave, and the oracle check (e2fsck -fn clean, then debugfs and our reader agree
 * with the expected state).
 */
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { Ext4Editor, type Ext4EditorOptions, Ext4Fs } from "@imgpatch/ext4";
import { DebugfsBatch, e2fsck, type FsTarget, runToolOk } from "@imgpatch/testkit";
import { expect } from "vitest";

export const FEATURE_SETS: Record<string, string[]> = {
  ext2: ["-t", "ext2"],
  ext3: ["-t", "ext3", "-b", "1024"],
  "ext4-csum": ["-t", "ext4"],
  "ext4-nocsum": ["-t", "ext4", "-O", "^metadata_csum"],
  "ext4-no64": ["-t", "ext4", "-O", "^64bit,^metadata_csum"],
  "ext4-4k": ["-t", "ext4", "-b", "4096"],
  "ext4-1k": ["-t", "ext4", "-b", "1024"],
  "ext4-inline": ["-t", "ext4", "-O", "inline_data"],
  "ext4-128": ["-t", "ext4", "-I", "128", "-O", "^metadata_csum"],
  "ext4-metabg": ["-t", "ext4", "-O", "meta_bg,^resize_inode"],
  "ext4-noflex-largedir": ["-t", "ext4", "-O", "^flex_bg,large_dir"],
  "ext4-csumseed-sparse2": ["-t", "ext4", "-O", "metadata_csum_seed,sparse_super2"],
};

export async function makeImage(dir: string, name: string, args: string[], size = "32M"): Promise<string> {
  const path = join(dir, `${name}.img`);
  await runToolOk("mke2fs", ["-q", "-F", "-E", "lazy_itable_init=1", ...args, path, size]);
  return path;
}

export async function openEditor(path: string, options: Ext4EditorOptions = {}): Promise<Ext4Editor> {
  const dev = await FileDevice.open(path);
  return Ext4Editor.open(dev, { timestamp: 1_700_000_000, ...options });
}

export type Expected =
  | {
      type: "file";
      mode: number;
      uid: number;
      gid: number;
      content: Uint8Array;
      xattrs?: Record<string, Uint8Array>;
      mtime?: number;
      links?: number;
    }
  | { type: "dir"; mode: number; uid: number; gid: number; xattrs?: Record<string, Uint8Array> }
  | { type: "symlink"; target: string; uid: number; gid: number }
  | {
      type: "fifo" | "chardev" | "blockdev" | "socket";
      mode: number;
      uid: number;
      gid: number;
      major?: number;
      minor?: number;
    };

/** e2fsck -fn reports no problem. */
export async function expectClean(path: string): Promise<void> {
  const r = await e2fsck(path);
  expect(r.problems, r.output).toEqual([]);
  expect(r.clean, r.output).toBe(true);
}

/** e2fsck -fn must be clean, and debugfs + our reader must show exactly `expected` (under the listed roots). */
export async function verify(
  target: FsTarget,
  expected: Map<string, Expected>,
  roots: string[],
): Promise<void> {
  const fsck = await e2fsck(target);
  expect(fsck.problems, fsck.output).toEqual([]);
  expect(fsck.clean, fsck.output).toBe(true);
  // Directory listings.
  const dirs = [...expected].filter(([, e]) => e.type === "dir").map(([p]) => p);
  // Every debugfs read below, from one debugfs process (answers as from debugfsStat etc.).
  const dfs = await DebugfsBatch.read(target, {
    ls: dirs,
    stat: [...expected.keys()],
    cat: [...expected].filter(([, e]) => e.type === "file").map(([p]) => p),
    xattrs: [...expected]
      .filter(([, e]) => (e.type === "file" || e.type === "dir") && e.xattrs)
      .map(([p]) => p),
  });
  for (const d of dirs) {
    const names = (await dfs.ls(d)).map((e) => e.name).filter((n) => n !== "." && n !== "..");
    const want = [...expected.keys()]
      .filter((p) => parentOf(p) === d)
      .map((p) => p.slice(p.lastIndexOf("/") + 1));
    expect(names.sort(), `listing of ${d}`).toEqual(want.sort());
  }
  for (const root of roots) expect(expected.has(root), root).toBe(true);
  for (const [path, e] of expected) {
    const st = await dfs.stat(path);
    expect(st.type, path).toBe(e.type);
    expect(st.uid, path).toBe(e.uid);
    expect(st.gid, path).toBe(e.gid);
    if (e.type === "symlink") {
      expect(st.linkTarget ?? (await dfs.cat(path)).toString(), path).toBe(e.target);
      continue;
    }
    expect(st.perm, path).toBe(e.mode);
    if (e.type === "file") {
      const data = await dfs.cat(path);
      expect(data.length, path).toBe(e.content.length);
      expect(Buffer.compare(data, Buffer.from(e.content)), path).toBe(0);
      if (e.mtime !== undefined) expect(st.mtime?.sec, path).toBe(e.mtime);
      if (e.links !== undefined) expect(st.links, path).toBe(e.links);
    }
    if ((e.type === "chardev" || e.type === "blockdev") && e.major !== undefined) {
      expect(st.rdev, path).toEqual({ major: e.major, minor: e.minor });
    }
    if ((e.type === "file" || e.type === "dir") && e.xattrs) {
      const xs = await dfs.xattrs(path);
      const got = Object.fromEntries(Object.entries(xs).map(([k, v]) => [k, Buffer.from(v).toString("hex")]));
      const want = Object.fromEntries(
        Object.entries(e.xattrs).map(([k, v]) => [k, Buffer.from(v).toString("hex")]),
      );
      if (!Object.keys(want).some((k) => k.startsWith("system.posix_acl"))) expect(got, path).toEqual(want);
    }
  }
  // Our reader on a fresh open.
  const file = typeof target === "string" ? target : target.path;
  const offset = typeof target === "string" ? 0 : (target.offset ?? 0);
  const dev = await FileDevice.open(file, { readOnly: true });
  try {
    const { RangeDevice } = await import("@imgpatch/disk");
    const fs = await Ext4Fs.open(offset ? new RangeDevice(dev, offset, dev.size - offset) : dev);
    for (const [path, e] of expected) {
      const st = await fs.lstat(path);
      expect(st.uid, path).toBe(e.uid);
      if (e.type === "file")
        expect(Buffer.compare(await fs.readFile(path), Buffer.from(e.content)), path).toBe(0);
      if (e.type === "symlink") expect(await fs.readlink(path), path).toBe(e.target);
      if (e.type === "file" && e.xattrs) {
        for (const [k, v] of Object.entries(e.xattrs)) {
          expect(Buffer.from(await fs.getxattr(path, k)).toString("hex"), `${path} ${k}`).toBe(
            Buffer.from(v).toString("hex"),
          );
        }
      }
    }
  } finally {
    await dev.close();
  }
}

export function parentOf(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

/** A scripted set of edits touching every operation; returns what must be there afterwards. */
export async function scenario(ed: Ext4Editor, big: number): Promise<Map<string, Expected>> {
  const exp = new Map<string, Expected>();
  const enc = (s: string) => new TextEncoder().encode(s);
  await ed.mkdir("/opt/agent/conf.d", { recursive: true, mode: 0o750, uid: 10, gid: 20 });
  exp.set("/opt", { type: "dir", mode: 0o750, uid: 10, gid: 20 });
  exp.set("/opt/agent", { type: "dir", mode: 0o750, uid: 10, gid: 20 });
  exp.set("/opt/agent/conf.d", { type: "dir", mode: 0o750, uid: 10, gid: 20 });
  await ed.writeFile("/opt/agent/hello.txt", "hello\n", {
    mode: 0o600,
    uid: 1000,
    gid: 1001,
    mtime: new Date(1_600_000_000_000),
  });
  const bigData = new Uint8Array(big);
  for (let i = 0; i < big; i++) bigData[i] = (i * 131 + (i >>> 12)) & 0xff;
  await ed.writeFile("/opt/agent/big.bin", bigData);
  // Streamed (async iterable) content.
  async function* chunks() {
    for (let i = 0; i < 5; i++) yield bigData.subarray(i * 3001, (i + 1) * 3001);
  }
  await ed.writeFile("/opt/agent/stream.bin", chunks());
  exp.set("/opt/agent/stream.bin", {
    type: "file",
    mode: 0o644,
    uid: 0,
    gid: 0,
    content: bigData.slice(0, 5 * 3001),
  });
  await ed.symlink("hello.txt", "/opt/agent/fast-link");
  exp.set("/opt/agent/fast-link", { type: "symlink", target: "hello.txt", uid: 0, gid: 0 });
  const longTarget = `/usr/${"long/".repeat(30)}target`;
  await ed.symlink(longTarget, "/opt/agent/slow-link", { uid: 5, gid: 6 });
  exp.set("/opt/agent/slow-link", { type: "symlink", target: longTarget, uid: 5, gid: 6 });
  await ed.link("/opt/agent/hello.txt", "/opt/agent/conf.d/hard");
  await ed.mknod("/opt/agent/fifo", "fifo", 0o640);
  exp.set("/opt/agent/fifo", { type: "fifo", mode: 0o640, uid: 0, gid: 0 });
  await ed.mknod("/opt/agent/null", "chardev", 0o666, 1, 3);
  exp.set("/opt/agent/null", { type: "chardev", mode: 0o666, uid: 0, gid: 0, major: 1, minor: 3 });
  await ed.mknod("/opt/agent/disk", "blockdev", 0o660, 259, 70000, { gid: 6 });
  exp.set("/opt/agent/disk", { type: "blockdev", mode: 0o660, uid: 0, gid: 6, major: 259, minor: 70000 });
  const xattrs: Record<string, Uint8Array> = {
    "user.note": enc("some value"),
    "security.selinux": enc("system_u:object_r:etc_t:s0\0"),
    "trusted.big": new Uint8Array(600).fill(0x41),
  };
  for (const [k, v] of Object.entries(xattrs)) await ed.setxattr("/opt/agent/hello.txt", k, v);
  await ed.setxattr("/opt/agent/hello.txt", "user.gone", "x");
  await ed.removexattr("/opt/agent/hello.txt", "user.gone");
  // Through a guest symlink to a directory: /opt/link → agent/conf.d
  await ed.symlink("agent/conf.d", "/opt/link");
  exp.set("/opt/link", { type: "symlink", target: "agent/conf.d", uid: 0, gid: 0 });
  for (let i = 0; i < 70; i++) {
    await ed.writeFile(`/opt/link/file-${i}.conf`, `n=${i}\n`, { mode: 0o640 });
    exp.set(`/opt/agent/conf.d/file-${i}.conf`, {
      type: "file",
      mode: 0o640,
      uid: 0,
      gid: 0,
      content: enc(`n=${i}\n`),
    });
  }
  // Overwrite, rename (same dir, across dirs, replacing), unlink, truncate, chmod/chown/utimes.
  await ed.writeFile("/opt/agent/conf.d/file-3.conf", "replaced\n");
  exp.set("/opt/agent/conf.d/file-3.conf", {
    type: "file",
    mode: 0o640,
    uid: 0,
    gid: 0,
    content: enc("replaced\n"),
  });
  await ed.rename("/opt/agent/conf.d/file-4.conf", "/opt/agent/conf.d/renamed.conf");
  exp.set("/opt/agent/conf.d/renamed.conf", exp.get("/opt/agent/conf.d/file-4.conf") as Expected);
  exp.delete("/opt/agent/conf.d/file-4.conf");
  await ed.rename("/opt/agent/conf.d/file-5.conf", "/opt/moved.conf");
  exp.set("/opt/moved.conf", exp.get("/opt/agent/conf.d/file-5.conf") as Expected);
  exp.delete("/opt/agent/conf.d/file-5.conf");
  await ed.rename("/opt/agent/conf.d/file-6.conf", "/opt/agent/conf.d/file-7.conf");
  exp.set("/opt/agent/conf.d/file-7.conf", exp.get("/opt/agent/conf.d/file-6.conf") as Expected);
  exp.delete("/opt/agent/conf.d/file-6.conf");
  for (let i = 10; i < 40; i++) {
    await ed.unlink(`/opt/agent/conf.d/file-${i}.conf`);
    exp.delete(`/opt/agent/conf.d/file-${i}.conf`);
  }
  await ed.mkdir("/opt/sub/deeper", { recursive: true });
  await ed.writeFile("/opt/sub/deeper/x", "x");
  await ed.rename("/opt/sub", "/opt/agent/sub");
  exp.set("/opt/agent/sub", { type: "dir", mode: 0o755, uid: 0, gid: 0 });
  exp.set("/opt/agent/sub/deeper", { type: "dir", mode: 0o755, uid: 0, gid: 0 });
  exp.set("/opt/agent/sub/deeper/x", { type: "file", mode: 0o644, uid: 0, gid: 0, content: enc("x") });
  await ed.mkdir("/opt/trash/a/b", { recursive: true });
  await ed.writeFile("/opt/trash/a/b/f", "f");
  await ed.symlink("nowhere", "/opt/trash/a/l");
  await ed.rm("/opt/trash", { recursive: true });
  await ed.truncate("/opt/agent/big.bin", 5000);
  exp.set("/opt/agent/big.bin", {
    type: "file",
    mode: 0o644,
    uid: 0,
    gid: 0,
    content: bigData.slice(0, 5000),
  });
  await ed.chmod("/opt/agent/big.bin", 0o4755);
  (exp.get("/opt/agent/big.bin") as { mode: number }).mode = 0o4755;
  await ed.chown("/opt/agent/fast-link", 7, 8); // follows the link to hello.txt
  await ed.lchown("/opt/agent/slow-link", 9, 10);
  exp.set("/opt/agent/slow-link", { type: "symlink", target: longTarget, uid: 9, gid: 10 });
  await ed.utimes("/opt/agent/conf.d/file-0.conf", new Date(1_500_000_000_000), new Date(1_400_000_000_000));
  (exp.get("/opt/agent/conf.d/file-0.conf") as { mtime?: number }).mtime = 1_400_000_000;
  exp.set("/opt/agent/hello.txt", {
    type: "file",
    mode: 0o600,
    uid: 7,
    gid: 8,
    content: enc("hello\n"),
    xattrs,
    mtime: 1_600_000_000,
    links: 2,
  });
  exp.set("/opt/agent/conf.d/hard", {
    type: "file",
    mode: 0o600,
    uid: 7,
    gid: 8,
    content: enc("hello\n"),
    links: 2,
  });
  return exp;
}
