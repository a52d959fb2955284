/** The imgpatch command, in-process (runCli): exit codes, one-line errors, --json shapes, image commands vs qemu-img. */
import { createHash } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fixture, fixtureCopy, qemuImgCheck, qemuImgCompare, qemuImgInfo, tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { type CliIo, parseSize, runCli } from "../src/commands/main.js";
import { OPERATION_HELP, OPERATION_NAMES, orderedSteps, readRecipe } from "../src/commands/recipe.js";
import { baseImage } from "../src/main-job.js";

async function cli(args: string[], env: Record<string, string> = {}) {
  let out = "";
  let err = "";
  const io: CliIo = { out: (t) => (out += t), err: (t) => (err += t), env: { ...env } };
  const code = await runCli(args, io);
  return { code, out, err };
}
const sha = async (p: string) =>
  createHash("sha256")
    .update(await readFile(p))
    .digest("hex");

describe("--version", () => {
  it("prints the package version and exits 0", async () => {
    const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
    const r = await cli(["--version"]);
    expect([r.code, r.out, r.err]).toEqual([0, `${pkg.version}\n`, ""]);
  });
});

describe("customize --help", () => {
  it("describes every operation", async () => {
    const r = await cli(["customize", "--help"]);
    expect(r.code).toBe(0);
    const flat = r.out.replace(/\s+/g, " ");
    for (const name of OPERATION_NAMES) {
      expect(flat).toContain(`--${name} `);
      expect(flat, name).toContain(OPERATION_HELP[name].replace(/\s+/g, " "));
    }
  });
});

describe("usage errors", () => {
  it.each([
    [["bogus"]],
    [[]],
    [["ls"]],
    [["create", "-f", "vmdk", "/tmp/x", "1G"]],
    [["create", "-f", "qcow2", "/tmp/x", "12 parsecs"]],
    [["customize", "--write", "/etc/x:y"]],
    [["convert", "-O", "vhd", "a", "b"]],
  ])("%j → exit 2, no stack", async (args) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^imgpatch: /);
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it("customize refuses to run without an output mode, and bad operation arguments", async () => {
    const base = await baseImage();
    let r = await cli(["customize", base, "--write", "/etc/x:y"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--overlay OUT, -o OUT or --in-place/);
    r = await cli(["customize", "-a", base, "--dry-run", "--chmod", "999:/etc"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/octal/);
    r = await cli(["customize", base, "--dry-run", "--write", "relative:x"]);
    expect(r.code).toBe(2);
    expect(r.err.trim().split("\n")).toHaveLength(1);
  });

  it("--debug adds the stack", async () => {
    const r = await cli(["cat", await baseImage(), "/nope", "--debug"]);
    expect(r.code).toBe(4);
    expect(r.err).toMatch(/\n\s+at /);
  });

  it("parseSize follows qemu-img", () => {
    expect(parseSize("1G")).toBe(2 ** 30);
    expect(parseSize("512M")).toBe(512 * 2 ** 20);
    expect(parseSize("1.5K")).toBe(1536);
    expect(parseSize("4096")).toBe(4096);
    expect(() => parseSize("-1")).toThrow();
  });
});

describe("bad images and guest paths", () => {
  it("garbage → exit 3 naming the image; a missing guest path → exit 4 naming image and path", async () => {
    const dir = await tempDir("cli");
    const junk = join(dir, "junk.img");
    await writeFile(junk, Buffer.alloc(1 << 20, 0x5a));
    let r = await cli(["ls", junk]);
    expect(r.code).toBe(3);
    expect(r.err).toContain(junk);
    const trunc = join(dir, "trunc.qcow2");
    await writeFile(trunc, (await readFile(await baseImage())).subarray(0, 300));
    r = await cli(["info", trunc]);
    expect(r.code).toBe(3);
    expect(r.err).not.toMatch(/\n\s+at /);
    const base = await baseImage();
    r = await cli(["cat", base, "/etc/nope"]);
    expect(r.code).toBe(4);
    expect(r.err.trim()).toBe(`imgpatch: ${base}: /etc/nope: ENOENT: no such file or directory`);
  });
});

describe("reading commands on the base image (GPT, / and /boot from fstab)", () => {
  it("info --json", async () => {
    const base = await baseImage();
    const r = await cli(["info", "--json", base]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out);
    expect(doc).toMatchObject({ format: "qcow2", partitionTable: "gpt", virtualSize: 130 * 2 ** 20 });
    expect(doc.guest.mounts.map((m: { mountpoint: string }) => m.mountpoint)).toEqual(["/", "/boot"]);
    expect(doc.guest.os.ID).toBe("centos");
    const text = await cli(["info", base]);
    expect(text.out).toContain("virtual size: 130 MiB (136314880 bytes)\n");
  });

  it("ls, cat, stat cross the /boot mount; symlinks resolved inside the guest", async () => {
    const base = await baseImage();
    let r = await cli(["ls", base, "/boot"]);
    expect(r.out.split("\n")).toContain("vmlinuz-5.14.0-stub.el9.x86_64");
    r = await cli(["cat", base, "/boot/grub2/grub.cfg"]);
    expect(r.out).toBe("set default=0\nset timeout=1\n");
    r = await cli(["cat", base, "/etc/os-release"]);
    expect(r.out).toMatch(/^NAME="CentOS Stream"/);
    r = await cli(["stat", "--json", base, "/home/centos"]);
    expect(JSON.parse(r.out)).toMatchObject({ type: "directory", mode: "0700", uid: 1000, gid: 1000 });
    r = await cli(["ls", "-l", "--json", base, "/etc/systemd/system/multi-user.target.wants"]);
    expect(JSON.parse(r.out).map((e: { target: string }) => e.target)).toEqual([
      "/usr/lib/systemd/system/cloud-init.service",
      "/usr/lib/systemd/system/sshd.service",
    ]);
    r = await cli(["ls", "-R", base, "/boot/loader"]);
    expect(r.out.trim().split("\n")).toEqual([
      "/boot/loader",
      "/boot/loader/entries",
      "/boot/loader/entries/centos-stub.conf",
    ]);
  });

  it("-m chooses mounts (no fstab then)", async () => {
    const base = await baseImage();
    const r = await cli(["ls", "-m", "/dev/sda2:/", base, "/boot"]);
    expect(r.out.trim()).toBe("");
    const r2 = await cli(["ls", "-m", "1:/", base, "/"]);
    expect(r2.out.split("\n")).toContain("grub2");
    const r3 = await cli(["ls", "-m", "9:/", base]);
    expect(r3.code).toBe(2);
    expect(r3.err).toMatch(/no volume 9/);
  });

  it("get copies out without following guest symlinks onto the host; diff of identical images is empty", async () => {
    const base = await baseImage();
    const dir = await tempDir("cli");
    const r = await cli(["get", base, "/etc", join(dir, "etc")]);
    expect(r.code).toBe(0);
    expect(await readFile(join(dir, "etc/hostname"), "utf8")).toBe("localhost.localdomain\n");
    const d = await cli(["diff", "--json", base, base]);
    expect(JSON.parse(d.out)).toEqual([]);
  });

  it("check: clean image → 0; broken refcount → 5", async () => {
    expect((await cli(["check", await baseImage()])).code).toBe(0);
    const r = await cli(["check", "--json", await fixture("broken-refcount.qcow2")]);
    expect(r.code).toBe(5);
    expect(JSON.parse(r.out).qcow2.corruptions).toBeGreaterThan(0);
  });
});

describe("image commands (qemu-img oracles)", () => {
  it("create, overlay, convert (-O raw, -c)", async () => {
    const dir = await tempDir("cli");
    expect((await cli(["create", "-f", "qcow2", join(dir, "e.qcow2"), "64M"])).code).toBe(0);
    expect(await qemuImgInfo(join(dir, "e.qcow2"))).toMatchObject({
      format: "qcow2",
      "virtual-size": 64 << 20,
    });
    expect((await cli(["create", "-f", "raw", join(dir, "e.img"), "1M"])).code).toBe(0);
    expect((await readFile(join(dir, "e.img"))).length).toBe(1 << 20);
    const base = await fixtureCopy("ext4-default.qcow2", dir);
    const before = await sha(base);
    expect(
      (
        await cli([
          "create",
          "-f",
          "qcow2",
          "-b",
          "ext4-default.qcow2",
          "-F",
          "qcow2",
          join(dir, "b.qcow2"),
          "",
        ])
      ).code,
    ).toBe(0);
    expect((await qemuImgInfo(join(dir, "b.qcow2")))["backing-filename"]).toBe("ext4-default.qcow2");
    expect((await cli(["overlay", base, join(dir, "o.qcow2")])).code).toBe(0);
    expect((await qemuImgCheck(join(dir, "o.qcow2"))).clean).toBe(true);
    expect((await cli(["convert", "-O", "raw", join(dir, "o.qcow2"), join(dir, "o.raw")])).code).toBe(0);
    expect((await cli(["convert", "-c", base, join(dir, "c.qcow2")])).code).toBe(0);
    expect((await qemuImgCheck(join(dir, "c.qcow2"))).clean).toBe(true);
    expect((await qemuImgCompare(base, join(dir, "o.raw"))).identical).toBe(true);
    expect((await qemuImgCompare(base, join(dir, "c.qcow2"))).identical).toBe(true);
    expect(await sha(base)).toBe(before);
    expect((await readdir(dir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });
});

describe("operations in order, commands files and recipes", () => {
  it("keeps command-line order across option names, expands files in place", async () => {
    const dir = await tempDir("cli");
    await writeFile(join(dir, "cmds"), "mkdir /opt/a\n# c\nwrite /opt/a/f:x\n");
    await writeFile(
      join(dir, "r.json"),
      JSON.stringify([{ chmod: "0600:/opt/a/f" }, { "selinux-relabel": null }]),
    );
    await writeFile(join(dir, "r.yaml"), "operations:\n  - touch: /opt/t\n  - hostname: gold\n");
    const steps = await orderedSteps([
      "img",
      "--write",
      "/etc/a:1",
      "--mkdir=/srv/x",
      "--commands-from-file",
      join(dir, "cmds"),
      "--write",
      "/etc/b:2",
      "--recipe",
      join(dir, "r.json"),
      "--selinux-permissive",
      "--recipe",
      join(dir, "r.yaml"),
    ]);
    expect(steps.map((s) => s.op)).toEqual([
      "write",
      "mkdir",
      "mkdir",
      "write",
      "write",
      "chmod",
      "selinux-relabel",
      "selinux-permissive",
      "touch",
      "hostname",
    ]);
    await writeFile(join(dir, "bad.json"), JSON.stringify([{ chmod: "x:/a" }]));
    await expect(readRecipe(join(dir, "bad.json"))).rejects.toThrow(/item 1/);
  });

  it("--dry-run --json prints the plan and writes nothing", async () => {
    const dir = await tempDir("cli");
    const base = await fixtureCopy("ext4-default.qcow2", dir);
    const before = await sha(base);
    const r = await cli([
      "customize",
      "--dry-run",
      "--json",
      base,
      "--mkdir",
      "/opt/x",
      "--write",
      "/opt/x/f:hi",
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ dryRun: true, operations: [{ op: "mkdir" }, { op: "write" }] });
    expect(await sha(base)).toBe(before);
    expect(await readdir(dir)).toEqual(["ext4-default.qcow2"]);
  });
});

describe("hostile or wrong paths", () => {
  it("a directory, an empty file, random bytes, a missing output directory → one line, no stack", async () => {
    const dir = await tempDir("cli");
    await writeFile(join(dir, "empty.img"), "");
    await writeFile(
      join(dir, "rand.img"),
      Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 255)),
    );
    const cases: Array<[string[], number]> = [
      [["info", dir], 2],
      [["ls", join(dir, "empty.img")], 3],
      [["ls", join(dir, "rand.img")], 3],
      [["customize", await baseImage(), "--overlay", join(dir, "no/such/o.qcow2"), "--mkdir", "/x"], 2],
    ];
    for (const [args, code] of cases) {
      const r = await cli(args);
      expect(r.code, args.join(" ")).toBe(code);
      expect(r.err.trim().split("\n")[0]).toMatch(/^imgpatch: /);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
    expect((await readdir(dir)).sort()).toEqual(["empty.img", "rand.img"]);
  });
});
