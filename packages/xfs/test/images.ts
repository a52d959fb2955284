/**
 * XFS fixture images for the reader tests, built at test time into a temp dir: mkfs.xfs with a
 * protofile for the files xfsprogs itself can make, then (v5 variants, as root) a read-write
 * kernel mount that adds what only the kernel makes: big directories in leaf and node form,
 * a btree-format fragmented file, unwritten extents, holes, hard links, sockets, xattrs in every
 * form (security.selinux, trusted.*, POSIX ACLs, remote values), sub-second and post-2038 times.
 */
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { isRoot, mkfsXfs, type ProtoNode, tempDir, withLoopMount } from "@imgpatch/testkit";

const run = promisify(execFile);

export interface XfsVariant {
  name: string;
  args: string[];
  /** The kernel here mounts it (v5 without ASCII-ci). */
  kernel: boolean;
}

export const V4_ARGS = ["-m", "crc=0,finobt=0,reflink=0,rmapbt=0,bigtime=0,inobtcount=0", "-i", "sparse=0"];

export const VARIANTS: readonly XfsVariant[] = [
  { name: "v4", args: V4_ARGS, kernel: false },
  { name: "v5", args: [], kernel: true },
  { name: "rmap", args: ["-m", "rmapbt=1"], kernel: true },
  { name: "s512", args: ["-s", "size=512"], kernel: true },
  { name: "b1k", args: ["-b", "size=1024"], kernel: true },
  { name: "dir64k", args: ["-n", "size=65536"], kernel: true },
  { name: "i2k", args: ["-i", "size=2048"], kernel: true },
  { name: "nrext64", args: ["-i", "nrext64=1"], kernel: true },
  { name: "ci", args: ["-n", "version=ci"], kernel: false },
  {
    name: "v4ci",
    args: [...V4_ARGS, "-n", "version=ci", "-b", "size=1024", "-i", "size=256"],
    kernel: false,
  },
];

/** Deterministic pseudo-random bytes. */
export function pseudoBytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Host files the protofile copies, and the tree mkfs.xfs builds from them. */
async function protoTree(dir: string, v4: boolean): Promise<ProtoNode & { type: "dir" }> {
  const src = join(dir, "src");
  await mkdir(src, { recursive: true });
  await writeFile(join(src, "small"), "hello xfs\n");
  await writeFile(join(src, "empty"), "");
  await writeFile(join(src, "medium"), pseudoBytes(200_000, 7));
  await writeFile(join(src, "large"), pseudoBytes(1_500_000, 11));
  const file = (s: string, mode = 0o644, uid = 0, gid = 0): ProtoNode => ({
    type: "file",
    source: join(src, s),
    mode,
    uid,
    gid,
  });
  const many = (n: number, prefix: string): Record<string, ProtoNode> => {
    const e: Record<string, ProtoNode> = {};
    for (let i = 0; i < n; i++) e[`${prefix}${i}`] = file("empty");
    return e;
  };
  return {
    type: "dir",
    mode: 0o755,
    entries: {
      etc: {
        type: "dir",
        entries: { hostname: file("small"), "MixedCase.TXT": file("small", 0o600, 1000, 1000) },
      },
      files: {
        type: "dir",
        entries: {
          small: file("small"),
          empty: file("empty"),
          medium: file("medium", 0o640, 1000, 100),
          large: file("large"),
          suid: file("small", 0o4755),
        },
      },
      sf: { type: "dir", entries: many(4, "s") },
      pblock: { type: "dir", entries: many(60, "block-entry-") },
      pleaf: { type: "dir", entries: many(400, "leaf-form-entry-") },
      pnode: { type: "dir", entries: many(2500, "node-form-directory-entry-") },
      links: {
        type: "dir",
        entries: {
          short: { type: "symlink", target: "../files/small" },
          dir: { type: "symlink", target: "/files" },
          // xfsprogs 6.1's protofile code writes remote symlinks without the v5 block header
          // (xfs_repair then rejects them), so long proto symlinks only on v4.
          ...(v4
            ? {
                long: {
                  type: "symlink",
                  target: `/${"l".repeat(200)}/${"m".repeat(200)}/${"n".repeat(300)}`,
                },
              }
            : {}),
        },
      },
      dev: {
        type: "dir",
        entries: {
          null: { type: "chardev", major: 1, minor: 3, mode: 0o666 },
          loop0: { type: "blockdev", major: 7, minor: 0, mode: 0o660, gid: 6 },
          big: { type: "chardev", major: 300, minor: 70000 },
          fifo: { type: "fifo", mode: 0o600 },
        },
      },
    },
  };
}

const POPULATE = String.raw`
set -e
cd "$1"
mkdir k
cd k
mkdir sf block leaf node
for i in 1 2 3; do : > sf/f$i; done
for i in $(seq 1 50); do : > block/file-$i; done
for i in $(seq 1 400); do : > leaf/leaf-entry-name-$i; done
for i in $(seq 1 3000); do : > node/node-entry-with-a-longer-name-$i; done
echo hello > hl; ln hl hl2; ln hl node/hl3
for i in $(seq 0 599); do echo "pwrite -q -S $((i % 250 + 1)) $((i * 8192)) 4096"; done | xfs_io -f frag
xfs_io -c fsync frag
xfs_io -f -c "falloc 0 1048576" -c "pwrite -q -S 0x5a 262144 4096" -c fsync prealloc
xfs_io -f -c "pwrite -q -S 0x33 20971520 4096" -c "truncate 41943040" -c fsync sparse
head -c 3000000 /dev/urandom > big
ln -s hl short
ln -s "$(head -c 700 /dev/zero | tr '\0' x)" long
mknod chr c 4 5; mknod blk b 8 1; mkfifo fifo
python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.bind('sock')"
: > xa-sf
setfattr -n user.one -v 1 xa-sf
setfattr -n security.selinux -v system_u:object_r:etc_t:s0 xa-sf
setfattr -n trusted.t -v tt xa-sf
: > xa-leaf
for i in $(seq 1 30); do setfattr -n user.attr-$i -v "$(head -c 100 /dev/zero | tr '\0' v)$i" xa-leaf; done
: > xa-node
for i in $(seq 1 600); do setfattr -n user.node-attribute-$i -v value-$i xa-node; done
: > xa-remote
setfattr -n user.big -v "0x$(head -c 20000 /dev/urandom | xxd -p | tr -d '\n')" xa-remote
setfattr -n security.selinux -v system_u:object_r:bin_t:s0 xa-remote
: > acl
setfattr -n system.posix_acl_access -v 0x0200000001000600ffffffff02000600e803000004000400ffffffff10000600ffffffff20000400ffffffff acl
mkdir acldir
setfattr -n system.posix_acl_default -v 0x0200000001000700ffffffff04000500ffffffff20000500ffffffff acldir
setfattr -h -n trusted.link -v yes short
setfattr -n user.dir -v d node
touch -d '2040-06-01 01:02:03.123456789' future
touch -d '1999-12-31 23:59:59.987654321' past
chown 1000:1001 past
chmod 2750 past
sync
`;

export interface BuiltImage {
  variant: XfsVariant;
  path: string;
  /** Populated through a kernel rw mount as well. */
  kernelPopulated: boolean;
}

/** Builds one variant in `dir` (kernel population only as root, for kernel-mountable variants). */
export async function buildImage(variant: XfsVariant, dir: string): Promise<BuiltImage> {
  const path = join(dir, `${variant.name}.img`);
  const proto = await protoTree(
    join(dir, variant.name),
    variant.args.includes("crc=0,finobt=0,reflink=0,rmapbt=0,bigtime=0,inobtcount=0"),
  );
  await mkfsXfs(path, { size: 128 << 20, args: variant.args, proto });
  let kernelPopulated = false;
  if (variant.kernel && isRoot()) {
    const mnt = join(dir, `${variant.name}.mnt`);
    await mkdir(mnt, { recursive: true });
    await withLoopMount(path, mnt, { rw: true }, async (m) => {
      await run("bash", ["-c", POPULATE, "populate", m], { maxBuffer: 1 << 24 });
    });
    kernelPopulated = true;
  }
  return { variant, path, kernelPopulated };
}

/** A temp dir for one test file's images. */
export async function imageDir(): Promise<string> {
  return tempDir("xfs-img-");
}

const FUZZ_POPULATE = String.raw`
set -e
cd "$1"
mkdir sf leaf node
for i in 1 2 3; do : > sf/f$i; done
for i in $(seq 1 60); do : > leaf/leaf-entry-$i; done
for i in $(seq 1 700); do : > node/node-entry-with-a-long-name-$i; done
for i in $(seq 0 79); do echo "pwrite -q -S $((i + 1)) $((i * 2048)) 1024"; done | xfs_io -f frag
xfs_io -c fsync frag
xfs_io -f -c "falloc 0 65536" -c "pwrite -q 8192 1024" pre
ln -s "$(head -c 1000 /dev/zero | tr '\0' y)" long
ln -s leaf short
mknod chr c 4 5
: > xa-sf; setfattr -n user.a -v 1 xa-sf; setfattr -n security.selinux -v system_u:object_r:etc_t:s0 xa-sf
: > xa-leaf; for i in $(seq 1 12); do setfattr -n user.leaf-$i -v "$(head -c 40 /dev/zero | tr '\0' q)" xa-leaf; done
: > xa-node; for i in $(seq 1 80); do setfattr -n trusted.node-attribute-$i -v value-$i xa-node; done
: > xa-remote; setfattr -n user.big -v "0x$(head -c 3000 /dev/urandom | xxd -p | tr -d '\n')" xa-remote
: > acl; setfattr -n system.posix_acl_access -v 0x0200000001000600ffffffff02000600e803000004000400ffffffff10000600ffffffff20000400ffffffff acl
sync
`;

/**
 * A small image for fuzzing (1 KiB blocks and directory blocks, so every form appears with few
 * entries): v5 populated by the kernel when running as root, or v4/v5 from a protofile only.
 */
export async function buildFuzzImage(
  dir: string,
  v4: boolean,
): Promise<{ path: string; populated: boolean }> {
  const name = v4 ? "fuzz-v4" : "fuzz-v5";
  const path = join(dir, `${name}.img`);
  const src = join(dir, `${name}-src`);
  await mkdir(src, { recursive: true });
  await writeFile(join(src, "data"), pseudoBytes(5000, 3));
  await writeFile(join(src, "empty"), "");
  const many = (n: number, prefix: string): Record<string, ProtoNode> => {
    const e: Record<string, ProtoNode> = {};
    for (let i = 0; i < n; i++) e[`${prefix}${i}`] = { type: "file", source: join(src, "empty") };
    return e;
  };
  const proto: ProtoNode & { type: "dir" } = {
    type: "dir",
    entries: {
      data: { type: "file", source: join(src, "data") },
      pleaf: { type: "dir", entries: many(50, "proto-leaf-") },
      pnode: { type: "dir", entries: many(650, "proto-node-entry-with-long-name-") },
      lnk: { type: "symlink", target: "data" },
      ...(v4 ? { longlink: { type: "symlink", target: "z".repeat(900) } } : {}),
      fifo: { type: "fifo" },
    },
  };
  const args = ["-b", "size=1024", "-d", "agcount=2", ...(v4 ? V4_ARGS : ["-i", "size=512"])];
  await mkfsXfs(path, { size: 36 << 20, args, proto });
  let populated = false;
  if (!v4 && isRoot()) {
    const mnt = join(dir, `${name}.mnt`);
    await mkdir(mnt, { recursive: true });
    await withLoopMount(path, mnt, { rw: true }, async (m) => {
      await run("bash", ["-c", FUZZ_POPULATE, "populate", m], { maxBuffer: 1 << 24 });
    });
    populated = true;
  }
  return { path, populated };
}

/** Deterministic pseudo-random bytes (xorshift32) for file contents the tests compare. */
export function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
