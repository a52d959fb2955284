/**
 * The backing-chain policy against hostile images made by qemu-img (and by patching headers the
 * way an attacker would): every link that leaves the allowed directories, reaches /proc, /sys,
 * /dev, a FIFO, or uses a protocol is refused with UnsafeImageError before a byte of it is read;
 * legitimate chains still read exactly what qemu reads.
 */

import { execFileSync } from "node:child_process";
import { mkdir, open, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { UnsafeImageError } from "@imgpatch/disk";
import { describeWithTools, qemuImg, qemuIo, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { inspectQcow2Chain, openQcow2, Qcow2BackingLoopError } from "../src/index.js";
import { qemuRaw } from "./helpers.js";

const SECRET = new TextEncoder().encode("HOST-SECRET-0123456789abcdef\n".repeat(4096)); // 116 KiB

/**
 * Rewrite the backing name stored in an image (header fields backing_file_offset at 8, u64 BE,
 * and backing_file_size at 16, u32 BE; the name goes where the old one started).
 */
async function patchBackingName(image: string, name: string): Promise<void> {
  const fh = await open(image, "r+");
  try {
    const head = Buffer.alloc(24);
    await fh.read(head, 0, 24, 0);
    const at = Number(head.readBigUInt64BE(8));
    const bytes = Buffer.from(name, "utf8");
    head.writeUInt32BE(bytes.length, 16);
    await fh.write(head.subarray(16, 20), 0, 4, 16);
    await fh.write(bytes, 0, bytes.length, at);
  } finally {
    await fh.close();
  }
}

async function refusal(
  image: string,
  options: Parameters<typeof openQcow2>[1] = {},
): Promise<UnsafeImageError> {
  const err = await openQcow2(image, { readOnly: true, ...options }).then(
    async (d) => {
      await d.close();
      return new Error("opened");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UnsafeImageError);
  return err as UnsafeImageError;
}

describeWithTools(["qemu-img", "qemu-io"], "backing-chain policy (images made by qemu-img)", () => {
  let root: string;
  let images: string;
  let hostDir: string;
  let secret: string;

  beforeAll(async () => {
    root = await tempDir("qcow2-policy-");
    images = join(root, "images");
    hostDir = join(root, "host");
    await mkdir(images);
    await mkdir(hostDir);
    secret = join(hostDir, "secret.raw");
    await writeFile(secret, SECRET);
  });

  const create = async (name: string, backing: string, fmt = "raw", size = "1M") => {
    const p = join(images, name);
    await qemuImg(["create", "-f", "qcow2", "-u", "-b", backing, "-F", fmt, p, size]);
    return p;
  };

  it("refuses an absolute backing path outside the image's directory, naming link, target and flag", async () => {
    const img = await create("abs.qcow2", secret);
    const e = await refusal(img);
    expect([e.reason, e.link, e.storedName, e.target, e.trust, e.file]).toEqual([
      "outside",
      "backing file",
      secret,
      secret,
      hostDir,
      img,
    ]);
    expect(e.message).toContain(`--allow-backing ${hostDir}`);
    expect(e.offset).toBeGreaterThan(0);
  });

  it("refuses ../ names, and a harmless-looking name beside the image that is a symlink out", async () => {
    const rel = await create("rel.qcow2", "../host/secret.raw");
    expect((await refusal(rel)).target).toBe(secret);
    await symlink(secret, join(images, "base.raw"));
    const viaLink = await create("vialink.qcow2", "base.raw");
    const e = await refusal(viaLink);
    expect([e.storedName, e.target, e.reason]).toEqual(["base.raw", secret, "outside"]);
  });

  it("refuses the third link of a chain of innocent links when it escapes; reports the whole chain", async () => {
    const dir = join(images, "chain3");
    await mkdir(dir);
    await qemuImg([
      "create",
      "-f",
      "qcow2",
      "-u",
      "-b",
      "../../host/secret.raw",
      "-F",
      "raw",
      join(dir, "c.qcow2"),
      "1M",
    ]);
    await qemuImg([
      "create",
      "-f",
      "qcow2",
      "-u",
      "-b",
      "c.qcow2",
      "-F",
      "qcow2",
      join(dir, "b.qcow2"),
      "1M",
    ]);
    await qemuImg([
      "create",
      "-f",
      "qcow2",
      "-u",
      "-b",
      "b.qcow2",
      "-F",
      "qcow2",
      join(dir, "a.qcow2"),
      "1M",
    ]);
    const e = await refusal(join(dir, "a.qcow2"));
    expect([e.file, e.target]).toEqual([join(dir, "c.qcow2"), secret]);
    const report = await inspectQcow2Chain(join(dir, "a.qcow2"));
    expect(report.safe).toBe(false);
    expect(report.links.map((l) => [l.name, l.verdict, l.reason ?? null])).toEqual([
      ["b.qcow2", "ok", null],
      ["c.qcow2", "ok", null],
      ["../../host/secret.raw", "refused", "outside"],
    ]);
    // trusting the directory makes the same chain readable
    const d = await openQcow2(join(dir, "a.qcow2"), { readOnly: true, allowBacking: [hostDir] });
    expect(Buffer.from(await d.read(0, 64)).toString()).toBe(Buffer.from(SECRET.subarray(0, 64)).toString());
    await d.close();
    expect((await inspectQcow2Chain(join(dir, "a.qcow2"), { allowBacking: [hostDir] })).safe).toBe(true);
  });

  it("never follows /proc/self/environ, /dev/zero or /sys, even with --allow-backing /", async () => {
    for (const [name, target] of [
      ["proc.qcow2", "/proc/self/environ"],
      ["dev.qcow2", "/dev/zero"],
      ["sys.qcow2", "/sys/kernel/notes"],
    ] as const) {
      const img = await create(name, target);
      const e = await refusal(img, { allowBacking: ["/"] });
      expect([e.reason, e.trust], name).toEqual(["system", undefined]);
      expect(e.message).toContain("never followed");
    }
    // a symlink beside the image into /proc is judged by where it leads
    await symlink("/proc/self/environ", join(images, "env.raw"));
    const e = await refusal(await create("envlink.qcow2", "env.raw"), { allowBacking: ["/"] });
    expect(e.reason).toBe("system");
  });

  it("never follows a FIFO or socket beside the image (and does not hang on it)", async () => {
    execFileSync("mkfifo", [join(images, "fifo.raw")]);
    const e = await refusal(await create("fifo.qcow2", "fifo.raw"));
    expect([e.reason, e.message]).toEqual(["not-regular", expect.stringContaining("a FIFO")]);
    await mkdir(join(images, "adir"));
    expect((await refusal(await create("dir.qcow2", "adir"))).reason).toBe("not-regular");
  });

  it("refuses json: and protocol names (qemu-img made and patched headers)", async () => {
    const json = 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/passwd"}}';
    expect((await refusal(await create("json.qcow2", json))).reason).toBe("protocol");
    expect((await refusal(await create("nbd.qcow2", "nbd://localhost:10809/x"))).reason).toBe("protocol");
    const patched = await create("patched.qcow2", "placeholder-name-long-enough-for-anything-we-write-here");
    for (const name of ["nbd:localhost:10809", "http://example.invalid/disk", "file:/etc/passwd"]) {
      await patchBackingName(patched, name);
      const e = await refusal(patched, { allowBacking: ["/"] });
      expect([e.reason, e.storedName]).toEqual(["protocol", name]);
    }
    // an attacker patching a legitimate name into ../../: refused all the same
    await patchBackingName(patched, `../host/secret.raw`);
    expect((await refusal(patched)).target).toBe(secret);
  });

  it("refuses an external data file outside the allowed directories; reads it like qemu when trusted", async () => {
    const data = join(hostDir, "ext.data");
    const img = join(images, "ext.qcow2");
    await qemuImg(["create", "-f", "qcow2", "-o", `data_file=${data},data_file_raw=on`, img, "1M"]);
    await qemuIo(img, ["write -P 0x5a 0 128k"]);
    // the attacker points the data file at a host file; its clusters stay mapped
    const e = await refusal(img);
    expect([e.link, e.target, e.reason]).toEqual(["data file", data, "outside"]);
    const d = await openQcow2(img, { readOnly: true, allowBacking: [hostDir] });
    expect(Buffer.compare(Buffer.from(await d.read(0, d.size)), Buffer.from(await qemuRaw(root, img)))).toBe(
      0,
    );
    await d.close();
    const report = await inspectQcow2Chain(img);
    expect(report.links.map((l) => [l.kind, l.verdict])).toEqual([["data file", "refused"]]);
  });

  it("follows legitimate chains beside, below and (trusted) outside the image, as qemu reads them", async () => {
    const dir = join(root, "legit");
    const sub = join(dir, "bases");
    await mkdir(sub, { recursive: true });
    await writeFile(join(dir, "beside.raw"), SECRET.subarray(0, 1 << 16));
    await writeFile(join(sub, "below.raw"), SECRET.subarray(0, 1 << 16));
    const cases: Array<[string, string, string[]]> = [
      ["beside.qcow2", "beside.raw", []],
      ["below.qcow2", "bases/below.raw", []],
      ["outside.qcow2", secret, [hostDir]],
    ];
    for (const [name, backing, allow] of cases) {
      const img = join(dir, name);
      await qemuImg(["create", "-f", "qcow2", "-b", backing, "-F", "raw", img, "1M"]);
      await qemuIo(img, ["write -P 0x11 64k 4k"]);
      const d = await openQcow2(img, { readOnly: true, allowBacking: allow });
      const ours = Buffer.from(await d.read(0, d.size));
      await d.close();
      expect(Buffer.compare(ours, Buffer.from(await qemuRaw(root, img))), name).toBe(0);
    }
  });

  it("still detects loops (a link back to an image above is a format error, not a read)", async () => {
    const dir = join(root, "loop");
    await mkdir(dir);
    await qemuImg([
      "create",
      "-f",
      "qcow2",
      "-u",
      "-b",
      "y.qcow2",
      "-F",
      "qcow2",
      join(dir, "x.qcow2"),
      "1M",
    ]);
    await qemuImg([
      "create",
      "-f",
      "qcow2",
      "-u",
      "-b",
      "x.qcow2",
      "-F",
      "qcow2",
      join(dir, "y.qcow2"),
      "1M",
    ]);
    await expect(openQcow2(join(dir, "x.qcow2"), { readOnly: true })).rejects.toBeInstanceOf(
      Qcow2BackingLoopError,
    );
  });
});
