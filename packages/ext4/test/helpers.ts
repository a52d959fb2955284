/**
 * Test helpers: generate a source tree on the host (all file kinds, owners, modes, times, xattrs,
 * sparse files, hard links), build ext2/3/4 images from it with `mke2fs -d`, and compare what
 * Ext4Fs reads with what the host says.
 */
import { createHash } from "node:crypto";
import {
  chmod,
  chown,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { FileDevice } from "@imgpatch/disk";
import { Ext4Fs, type Ext4OpenOptions } from "@imgpatch/ext4";
import { runToolOk } from "@imgpatch/testkit";
import { expect } from "vitest";

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pseudoBytes(n: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

export interface TreeOptions {
  /** Entries in /big (an htree directory when large). */
  bigDirEntries?: number;
  /** Bytes of the largest file. */
  largeFile?: number;
  /** Value size of the xattr that must go to an external block. */
  bigXattr?: number;
  /** Skip device nodes and ACLs (when the host cannot make them). */
  minimal?: boolean;
}

async function setfattr(path: string, name: string, value: Buffer): Promise<void> {
  await runToolOk("setfattr", ["-h", "-n", name, "-v", `0x${value.toString("hex")}`, path]);
}

/** Build the standard tree under `root` (which must exist and be empty). */
export async function makeTree(root: string, opts: TreeOptions = {}): Promise<void> {
  const w = (p: string, data: Buffer | string) => writeFile(join(root, p), data);
  await w("empty", "");
  await mkdir(join(root, "small"));
  const sizes = [1, 59, 60, 61, 100, 511, 1023, 1024, 1025, 4095, 4096, 4097, 8193, 65543, 300001];
  for (const [i, n] of sizes.entries()) await w(`small/s${n}`, pseudoBytes(n, i + 1));
  await w("small/text.txt", "hello, ext4\n");
  await link(join(root, "small/s100"), join(root, "small/hardlink-a"));
  await link(join(root, "small/s100"), join(root, "hardlink-b"));
  await w("large.bin", pseudoBytes(opts.largeFile ?? 3 * 1024 * 1024 + 123, 99));
  // Sparse: data, a hole of 2 MiB, data, a trailing hole.
  const fh = await open(join(root, "sparse.bin"), "w");
  await fh.write(pseudoBytes(5000, 7), 0, 5000, 0);
  await fh.write(pseudoBytes(4096, 8), 0, 4096, 2 * 1024 * 1024 + 8192);
  await fh.truncate(4 * 1024 * 1024);
  await fh.close();
  // Deep directories.
  let deep = "deep";
  for (const c of ["a", "b", "c", "d", "e", "f"]) {
    deep = `${deep}/${c}`;
  }
  await mkdir(join(root, deep), { recursive: true });
  await w(`${deep}/leaf.txt`, "deep leaf\n");
  // Symlinks of every storage kind.
  await mkdir(join(root, "links"));
  await symlink("../small/text.txt", join(root, "links/rel"));
  await symlink("/small", join(root, "links/abs"));
  await symlink("x".repeat(59), join(root, "links/len59"));
  await symlink("y".repeat(60), join(root, "links/len60"));
  await symlink(`/deep/${"z".repeat(300)}`, join(root, "links/long"));
  await symlink("loop2", join(root, "links/loop1"));
  await symlink("loop1", join(root, "links/loop2"));
  await symlink("nowhere", join(root, "links/dangling"));
  await symlink("../../../../..", join(root, "links/updir"));
  await symlink("../deep/a/b", join(root, "links/tob"));
  // Names.
  await mkdir(join(root, "names"));
  await w("names/héllo wörld ✓", "unicode\n");
  await w(`names/${"n".repeat(255)}`, "long name\n");
  await w("names/with space", "space\n");
  // Modes and owners.
  await mkdir(join(root, "modes"));
  for (const [name, mode] of [
    ["setuid", 0o4755],
    ["setgid", 0o2755],
    ["none", 0o000],
    ["ro", 0o444],
  ] as const) {
    await w(`modes/${name}`, name);
    await chmod(join(root, `modes/${name}`), mode);
  }
  await mkdir(join(root, "modes/sticky"));
  await chmod(join(root, "modes/sticky"), 0o1777);
  await mkdir(join(root, "owners"));
  for (const [name, uid, gid] of [
    ["user", 1000, 1000],
    ["high", 70000, 80001],
    ["nobody", 65534, 65534],
    ["huge", 3000000000, 4000000000],
  ] as const) {
    await w(`owners/${name}`, name);
    await chown(join(root, `owners/${name}`), uid, gid);
  }
  await symlink("user", join(root, "owners/link"));
  await runToolOk("chown", ["-h", "4242:4343", join(root, "owners/link")]);
  if (!opts.minimal) {
    await runToolOk("mkfifo", [join(root, "fifo")]);
    await runToolOk("mknod", [join(root, "chardev"), "c", "1", "3"]);
    await runToolOk("mknod", [join(root, "blockdev"), "b", "259", "300"]);
  }
  // Extended attributes (in-inode and, for the big one, the external block).
  await w("xattrs", "has xattrs\n");
  await setfattr(join(root, "xattrs"), "user.small", Buffer.from("v"));
  await setfattr(join(root, "xattrs"), "user.big", pseudoBytes(opts.bigXattr ?? 700, 5));
  await setfattr(join(root, "xattrs"), "trusted.t", Buffer.from("trusted value"));
  await setfattr(join(root, "xattrs"), "security.selinux", Buffer.from("system_u:object_r:etc_t:s0\0"));
  await w("cap", "capability holder\n");
  await setfattr(
    join(root, "cap"),
    "security.capability",
    Buffer.from("0100000200300000000000000000000000000000", "hex"),
  );
  await setfattr(join(root, "small/s1"), "user.one", Buffer.from("1"));
  await setfattr(join(root, "links/rel"), "trusted.onlink", Buffer.from("L"));
  if (!opts.minimal) {
    const acl = Buffer.from(
      "0200000001000600ffffffff02000400d204000004000400ffffffff10000400ffffffff20000000ffffffff",
      "hex",
    );
    await setfattr(join(root, "xattrs"), "system.posix_acl_access", acl);
    await setfattr(join(root, "modes/sticky"), "system.posix_acl_default", acl);
  }
  if (opts.bigDirEntries) {
    await mkdir(join(root, "big"));
    for (let i = 0; i < opts.bigDirEntries; i++) {
      await writeFile(
        join(root, "big", `entry-${String(i).padStart(6, "0")}-${(i * 7919) % 10007}`),
        i % 7 === 0 ? String(i) : "",
      );
    }
  }
  // Times: varied, including before 1970.
  const times: [string, number][] = [
    ["small/text.txt", 1_000_000_000],
    ["empty", 0],
    ["large.bin", 1_600_000_000],
    ["modes/ro", -1_000_000],
  ];
  for (const [p, t] of times) await utimes(join(root, p), t, t);
}

export interface HostEntry {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  mtimeSec: number;
  ino: number;
  rdev: number;
  target?: string;
  sha256?: string;
  xattrs: Record<string, string>;
}

/** getfattr for a whole tree in one run: path → (name → hex value). */
async function hostXattrs(root: string): Promise<Map<string, Record<string, string>>> {
  const out = (
    await runToolOk("getfattr", ["-R", "-P", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", root])
  ).toString("utf8");
  const map = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const line of out.split("\n")) {
    const f = /^# file: (.*)$/.exec(line);
    if (f) {
      const p = f[1].slice(root.length) || "/";
      cur = {};
      map.set(p, cur);
      continue;
    }
    const kv = /^([^=]+)=0x([0-9a-f]*)$/.exec(line);
    if (kv && cur) cur[kv[1]] = kv[2];
  }
  return map;
}

/** Everything the host says about the tree (lstat, readlink, content hashes, xattrs). */
export async function scanHost(root: string): Promise<HostEntry[]> {
  const xa = await hostXattrs(root);
  const out: HostEntry[] = [];
  async function rec(rel: string) {
    const abs = join(root, rel);
    const st = await lstat(abs, { bigint: true });
    const p = rel === "" ? "/" : rel;
    const e: HostEntry = {
      path: p,
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: Number(st.size),
      nlink: Number(st.nlink),
      mtimeSec:
        Number(st.mtimeNs / 1_000_000_000n) - (st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n ? 1 : 0),
      ino: Number(st.ino),
      rdev: Number(st.rdev),
      xattrs: xa.get(p) ?? {},
    };
    if (st.isSymbolicLink()) e.target = await readlink(abs);
    if (st.isFile())
      e.sha256 = createHash("sha256")
        .update(await readFile(abs))
        .digest("hex");
    out.push(e);
    if (st.isDirectory()) {
      for (const name of (await readdir(abs)).sort()) await rec(rel === "" ? `/${name}` : `${rel}/${name}`);
    }
  }
  await rec("");
  return out;
}

export async function mkfs(
  image: string,
  src: string | undefined,
  sizeMiB: number,
  args: string[],
): Promise<void> {
  const a = ["-q", "-F", ...args];
  if (src) a.push("-d", src);
  await runToolOk("mke2fs", [...a, "-E", "root_owner=0:0", image, `${sizeMiB}M`], {
    env: { MKE2FS_CONFIG: "/etc/mke2fs.conf", E2FSPROGS_FAKE_TIME: "" },
  });
}

export async function openImage(path: string, options: Ext4OpenOptions = {}): Promise<Ext4Fs> {
  const dev = await FileDevice.open(path, { readOnly: true });
  return Ext4Fs.open(dev, options);
}

export function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/**
 * Compare the whole image with the host tree: same set of paths, types, modes, owners, sizes,
 * contents, targets, mtimes, link counts, hard-link identity, device numbers, xattrs.
 */
export async function compareWithHost(
  fs: Ext4Fs,
  host: HostEntry[],
  options: { skip?: (p: string) => boolean; noContent?: ReadonlySet<string> } = {},
): Promise<number> {
  const skip = options.skip ?? ((p: string) => p === "/lost+found");
  const ours = new Map<string, Awaited<ReturnType<Ext4Fs["lstat"]>>>();
  for await (const e of fs.walk("/")) {
    if (skip(e.path) || e.path.startsWith("/lost+found/")) continue;
    ours.set(e.path, e.stats);
  }
  const hostPaths = host.map((h) => h.path).filter((p) => !skip(p));
  expect([...ours.keys()].sort()).toEqual(hostPaths.sort());
  const inoMap = new Map<number, number>();
  let checked = 0;
  for (const h of host) {
    if (skip(h.path)) continue;
    const st = ours.get(h.path)!;
    const ctx = h.path;
    expect({ ctx, mode: st.mode }).toEqual({ ctx, mode: h.mode });
    expect({ ctx, uid: st.uid, gid: st.gid }).toEqual({ ctx, uid: h.uid, gid: h.gid });
    if (options.noContent?.has(h.path)) continue;
    if (!st.isDirectory()) {
      expect({ ctx, size: st.size }).toEqual({ ctx, size: h.size });
      expect({ ctx, nlink: st.nlink }).toEqual({ ctx, nlink: h.nlink });
    }
    if (h.path !== "/") expect({ ctx, mtime: st.mtimeSpec.sec }).toEqual({ ctx, mtime: h.mtimeSec });
    // Hard links: same host inode ⇔ same guest inode.
    const prev = inoMap.get(h.ino);
    if (prev !== undefined) expect({ ctx, ino: st.ino }).toEqual({ ctx, ino: prev });
    else inoMap.set(h.ino, st.ino);
    if (h.sha256 !== undefined) {
      const data = await fs.readFile(h.path);
      expect({ ctx, sha: sha256(data) }).toEqual({ ctx, sha: h.sha256 });
    }
    if (h.target !== undefined)
      expect({ ctx, target: await fs.readlink(h.path) }).toEqual({ ctx, target: h.target });
    if (st.isCharacterDevice() || st.isBlockDevice())
      expect({ ctx, rdev: st.rdev }).toEqual({ ctx, rdev: h.rdev });
    const names = (await fs.llistxattr(h.path)).sort();
    expect({ ctx, names }).toEqual({ ctx, names: Object.keys(h.xattrs).sort() });
    for (const [name, hex] of Object.entries(h.xattrs)) {
      const v = await fs.lgetxattr(h.path, name);
      expect({ ctx, name, v: v.toString("hex") }).toEqual({ ctx, name, v: hex });
    }
    checked++;
  }
  return checked;
}
