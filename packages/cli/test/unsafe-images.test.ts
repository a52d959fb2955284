/**
 * Issue #21: images from strangers must not read the host. Hostile images are made at test time
 * by qemu-img (and by patching headers as an attacker would); every command that opens an image
 * refuses them with exit 3, leaves no output file, and writes no byte of the named host file.
 * Legitimate chains — beside the base, below it, outside with --allow-backing — still convert to
 * what qemu reads (qemu-img compare).
 */
import { copyFile, lstat, mkdir, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, qemuImg, qemuImgCheck, qemuImgCompare, qemuIo, tempDir } from "@imgpatch/testkit";
import { beforeAll, describe, expect, it } from "vitest";
import { type CliIo, runCli } from "../src/commands/main.js";
import { baseImage } from "../src/main-job.js";

const MARK = "HOST-SECRET-7f3a9c";
const SECRET = Buffer.from(`${MARK} the host's private bytes\n`.repeat(8192)); // 344 KiB

async function cli(args: string[], env: Record<string, string> = {}) {
  let out = "";
  let err = "";
  const chunks: Uint8Array[] = [];
  const io: CliIo = {
    out: (t) => (out += t),
    outBytes: (b) => chunks.push(b),
    err: (t) => (err += t),
    env: { ...env },
  };
  const code = await runCli(args, io);
  return { code, out: out + Buffer.concat(chunks).toString("latin1"), err };
}

/** Every file under dir, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** No file under dir but `except` holds the secret's marker (outputs, their temporaries, anything). */
async function expectNoLeak(dir: string, except: string[]): Promise<void> {
  for (const f of await filesUnder(dir)) {
    if (except.includes(f)) continue;
    expect((await readFile(f)).includes(MARK), `${f} holds host bytes`).toBe(false);
  }
}

describeWithTools(["qemu-img", "qemu-io"], "hostile images are refused by every command (exit 3)", () => {
  let root: string;
  let images: string;
  let host: string;
  let secret: string;
  const hostile: Array<[string, string]> = [];

  beforeAll(async () => {
    root = await tempDir("unsafe-");
    images = join(root, "imgs");
    host = join(root, "host");
    await mkdir(images);
    await mkdir(host);
    secret = join(host, "secret.raw");
    await writeFile(secret, SECRET);
    const mk = async (name: string, backing: string, fmt: string, dir = images) => {
      const p = join(dir, name);
      await qemuImg(["create", "-f", "qcow2", "-u", "-b", backing, "-F", fmt, p, "1M"]);
      hostile.push([name, p]);
      return p;
    };
    await mk("absolute.qcow2", secret, "raw");
    await mk("dotdot.qcow2", "../host/secret.raw", "raw");
    await symlink(secret, join(images, "harmless.raw"));
    await mk("symlinked.qcow2", "harmless.raw", "raw");
    // a chain of innocent links whose third escapes
    const chain = join(images, "chain");
    await mkdir(chain);
    await qemuImg([
      "create",
      "-f",
      "qcow2",
      "-u",
      "-b",
      "../../host/secret.raw",
      "-F",
      "raw",
      join(chain, "l3.qcow2"),
      "1M",
    ]);
    await qemuImg([
      "create",
      "-f",
      "qcow2",
      "-u",
      "-b",
      "l3.qcow2",
      "-F",
      "qcow2",
      join(chain, "l2.qcow2"),
      "1M",
    ]);
    await mk("chain/l1.qcow2", "l2.qcow2", "qcow2");
    await mk("environ.qcow2", "/proc/self/environ", "raw");
    await mk("devzero.qcow2", "/dev/zero", "raw");
    await mk("json.qcow2", `json:{"driver":"raw","file":{"driver":"file","filename":"${secret}"}}`, "raw");
    await mk("nbd.qcow2", "nbd://127.0.0.1:10809/secret", "raw");
    // no backing-format extension: the secret would be probed, then read as raw
    const probed = join(images, "probed.qcow2");
    await qemuImg(["create", "-f", "qcow2", "-u", "-b", secret, "-F", "raw", probed, "1M"]);
    hostile.push(["probed.qcow2", probed]);
    // external data file with mapped clusters, then its name patched to the secret (same length)
    const dataImg = join(images, "datafile.qcow2");
    const decoy = join(root, "imgs", "secret.raw");
    expect(decoy.length).toBe(secret.length);
    await qemuImg(["create", "-f", "qcow2", "-o", `data_file=${decoy},data_file_raw=on`, dataImg, "1M"]);
    await qemuIo(dataImg, ["write -P 0x41 0 256k"]);
    const bytes = await readFile(dataImg);
    const at = bytes.indexOf(Buffer.from(decoy));
    expect(at).toBeGreaterThan(0);
    Buffer.from(secret).copy(bytes, at);
    await writeFile(dataImg, bytes);
    await writeFile(decoy, Buffer.alloc(0)); // the decoy is empty now: only the secret has the bytes
    hostile.push(["datafile.qcow2", dataImg]);
    // format confusion: a file named raw whose first bytes are a qcow2 header naming the secret
    await mk("disk.raw", secret, "raw");
  });

  const commands = (img: string, out: string): Array<[string, string[]]> => [
    ["convert", ["convert", "-O", "raw", img, join(out, "out.raw")]],
    ["convert qcow2", ["convert", img, join(out, "out.qcow2")]],
    ["convert --sparsify", ["convert", "--sparsify", img, join(out, "sp.qcow2")]],
    ["sparsify", ["sparsify", img, join(out, "s.qcow2")]],
    ["sparsify --in-place", ["sparsify", "--in-place", img]],
    ["customize -o", ["customize", img, "-o", join(out, "c.qcow2"), "--mkdir", "/x"]],
    ["customize --overlay", ["customize", img, "--overlay", join(out, "o.qcow2"), "--mkdir", "/x"]],
    ["customize --in-place", ["customize", img, "--in-place", "--mkdir", "/x"]],
    ["elements", ["elements", img, "--overlay", join(out, "e.qcow2"), "--elements-path", out, "none"]],
    ["sysprep -o", ["sysprep", img, "-o", join(out, "sp-out.qcow2")]],
    ["sysprep --in-place", ["sysprep", img, "--in-place"]],
    ["overlay", ["overlay", img, join(out, "ov.qcow2")]],
    ["ls", ["ls", img, "/"]],
    ["cat", ["cat", img, "/etc/hostname"]],
    ["stat", ["stat", img, "/"]],
    ["get", ["get", img, "/", join(out, "tree")]],
    ["diff", ["diff", img, img]],
    ["info", ["info", img]],
    ["check", ["check", img]],
  ];

  it("every command: exit 3, 'unsafe image' naming link and target, no output, no host byte", async () => {
    let runs = 0;
    for (const [name, img] of hostile) {
      for (const [label, args] of commands(img, join(root, "out"))) {
        await mkdir(join(root, "out"), { recursive: true });
        const r = await cli(args);
        const what = `${label} ${name}`;
        expect(r.code, `${what}: ${r.err}`).toBe(3);
        // (writing an image with an external data file is refused even before its link is judged)
        const why =
          what === "customize --in-place datafile.qcow2" || what === "sysprep --in-place datafile.qcow2"
            ? /external data file: .* can only be opened read-only/
            : /unsafe image: (backing|data) file "/;
        expect(r.err, what).toMatch(why);
        expect(r.out.includes(MARK), what).toBe(false);
        expect(await readdir(join(root, "out")), what).toEqual([]);
        runs++;
      }
    }
    expect(runs).toBe(hostile.length * commands("", "").length);
    await expectNoLeak(root, [secret]);
    // --in-place left no undo file beside any image
    const all = [...(await readdir(images)), ...(await readdir(join(images, "chain")))];
    expect(all.filter((f) => f.includes("imgpatch-undo"))).toEqual([]);
  });

  it("the refusal says which link, where it points and the flag that trusts it", async () => {
    const chainTop = hostile.find(([n]) => n === "chain/l1.qcow2")![1];
    const r = await cli(["convert", "-O", "raw", chainTop, join(root, "x.raw")]);
    expect(r.code).toBe(3);
    expect(r.err).toContain(join(images, "chain", "l3.qcow2")); // the image holding the link
    expect(r.err).toContain(`"../../host/secret.raw" -> ${secret}`);
    expect(r.err).toContain(`--allow-backing ${host}`);
    const proc = await cli([
      "convert",
      "-O",
      "raw",
      "--allow-backing",
      "/",
      hostile.find(([n]) => n === "environ.qcow2")![1],
      join(root, "x.raw"),
    ]);
    expect([proc.code, proc.err]).toEqual([3, expect.stringContaining("never followed")]);
    const confused = await cli(["ls", join(images, "disk.raw")]);
    expect(confused.err).toContain("is named like a raw image but its bytes are a qcow2 header");
    await expect(stat(join(root, "x.raw"))).rejects.toThrow();
  });

  it("--format raw never probes: the qcow2 header is copied as bytes, nothing it names is read", async () => {
    const out = join(root, "asraw.raw");
    const r = await cli(["convert", "-f", "raw", "-O", "raw", join(images, "disk.raw"), out]);
    expect(r.code, r.err).toBe(0);
    expect(Buffer.compare(await readFile(out), await readFile(join(images, "disk.raw")))).toBe(0);
    expect((await readFile(out)).includes(MARK)).toBe(false);
  });

  it("--allow-backing / IMGPATCH_ALLOW_BACKING trust a directory (the data-file image then reads like qemu)", async () => {
    const img = hostile.find(([n]) => n === "absolute.qcow2")![1];
    const a = join(root, "trusted-a.raw");
    expect((await cli(["convert", "-O", "raw", "--allow-backing", host, img, a])).code).toBe(0);
    expect((await qemuImgCompare(img, a, { formatB: "raw" })).identical).toBe(true);
    const b = join(root, "trusted-b.raw");
    expect(
      (await cli(["convert", "-O", "raw", img, b], { IMGPATCH_ALLOW_BACKING: `/nonexistent:${host}` })).code,
    ).toBe(0);
    expect(Buffer.compare(await readFile(a), await readFile(b))).toBe(0);
  });
});

describeWithTools(
  ["qemu-img"],
  "formats imgpatch never opens: their links are reported, never followed",
  () => {
    it("vmdk extent / parent, qed and qcow v1 backing files naming a host file: exit 3, listed by info", async () => {
      const root = await tempDir("formats-");
      const secret = join(root, "host", "secret.raw");
      await mkdir(join(root, "host"));
      await mkdir(join(root, "imgs"));
      await writeFile(secret, SECRET);
      const img = (n: string) => join(root, "imgs", n);
      await writeFile(
        img("flat.vmdk"),
        `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 2048 FLAT "${secret}" 0\n`,
      );
      // a delta vmdk made over a real parent, then its embedded descriptor's parent hint patched
      await qemuImg(["create", "-f", "vmdk", img("parent.vmdk"), "1M"]);
      await qemuImg(["create", "-f", "vmdk", "-b", "parent.vmdk", "-F", "vmdk", img("delta.vmdk"), "1M"]);
      const delta = await readFile(img("delta.vmdk"));
      const at = delta.indexOf("# Disk DescriptorFile");
      const text = delta.subarray(at, delta.indexOf(0, at)).toString("latin1");
      expect(text).toContain('parentFileNameHint="parent.vmdk"');
      Buffer.from(text.replace('"parent.vmdk"', `"${secret}"`), "latin1").copy(delta, at);
      await writeFile(img("delta.vmdk"), delta);
      await qemuImg(["create", "-f", "qed", "-u", "-b", secret, "-F", "raw", img("b.qed"), "1M"]);
      await qemuImg(["create", "-f", "qcow", "-u", "-b", secret, "-F", "raw", img("b.qcow"), "1M"]);
      const expected: Array<[string, string]> = [
        ["flat.vmdk", "extent"],
        ["delta.vmdk", "parent"],
        ["b.qed", "backing file"],
        ["b.qcow", "backing file"],
      ];
      for (const [name, kind] of expected) {
        const out = join(root, "out.raw");
        const r = await cli(["convert", "-O", "raw", img(name), out]);
        expect(r.code, name).toBe(3);
        await expect(stat(out)).rejects.toThrow();
        const info = await cli(["info", "--json", img(name)]);
        expect(info.code, name).toBe(3);
        const safety = JSON.parse(info.out).safety;
        expect(safety.openedAs, name).toBeNull();
        // (a sparse vmdk's descriptor also names its own file as an extent: not-opened, harmless)
        expect(
          safety.links.filter((l: { verdict: string }) => l.verdict !== "not-opened"),
          name,
        ).toEqual([
          expect.objectContaining({
            kind,
            name: secret,
            target: secret,
            verdict: "refused",
            reason: "outside",
          }),
        ]);
      }
      await expectNoLeak(root, [secret]);
    });
  },
);

describeWithTools(["qemu-img"], "legitimate chains still work", () => {
  let root: string;
  let base: string;

  beforeAll(async () => {
    root = await tempDir("legit-");
    base = join(root, "base.qcow2");
    await copyFile(await baseImage(), base);
  });

  it("beside, in a subdirectory, outside with --allow-backing: convert matches qemu-img compare", async () => {
    const sub = join(root, "bases");
    const far = await tempDir("far-");
    await mkdir(sub);
    await copyFile(base, join(sub, "b.qcow2"));
    await copyFile(base, join(far, "b.qcow2"));
    const cases: Array<[string, string, string[]]> = [
      ["beside.qcow2", "base.qcow2", []],
      ["below.qcow2", "bases/b.qcow2", []],
      ["far.qcow2", join(far, "b.qcow2"), ["--allow-backing", far]],
    ];
    for (const [name, backing, flags] of cases) {
      const top = join(root, name);
      await qemuImg(["create", "-f", "qcow2", "-b", backing, "-F", "qcow2", top]);
      const out = join(root, `${name}.raw`);
      const r = await cli(["convert", "-O", "raw", ...flags, top, out]);
      expect(r.code, `${name}: ${r.err}`).toBe(0);
      expect((await qemuImgCompare(top, out, { formatB: "raw" })).identical, name).toBe(true);
    }
    // the far one without the flag is refused
    expect((await cli(["convert", "-O", "raw", join(root, "far.qcow2"), join(root, "nope.raw")])).code).toBe(
      3,
    );
  });

  it("overlays imgpatch writes reopen by default beside their base, and with --allow-backing elsewhere", async () => {
    const here = join(root, "ov-here.qcow2");
    let r = await cli(["customize", base, "--overlay", here, "--write", "/etc/motd:hi"]);
    expect(r.code, r.err).toBe(0);
    r = await cli(["cat", here, "/etc/motd"]);
    expect([r.code, r.out]).toEqual([0, "hi"]);
    const elsewhere = await tempDir("ov-out-");
    const there = join(elsewhere, "ov.qcow2");
    r = await cli(["customize", base, "--overlay", there, "--write", "/etc/motd:there"]);
    expect(r.code, r.err).toBe(0);
    expect((await cli(["cat", there, "/etc/motd"])).code).toBe(3);
    r = await cli(["cat", "--allow-backing", root, there, "/etc/motd"]);
    expect([r.code, r.out]).toEqual([0, "there"]);
    // -o into another directory reads the input's chain under the input's policy
    const full = join(elsewhere, "full.qcow2");
    expect(
      (await cli(["customize", join(root, "beside.qcow2"), "-o", full, "--write", "/etc/motd:o"])).code,
    ).toBe(0);
    expect((await qemuImgCheck(full)).clean).toBe(true);
    expect((await cli(["cat", full, "/etc/motd"])).out).toBe("o");
  });

  it("info and check report the safety verdict (text and --json)", async () => {
    const img = join(root, "beside.qcow2");
    let r = await cli(["info", "--json", img]);
    expect(r.code, r.err).toBe(0);
    const doc = JSON.parse(r.out);
    expect(doc.safety).toMatchObject({
      verdict: "safe",
      probedFormat: "qcow2",
      namedFormat: "qcow2",
      declaredFormat: null,
      openedAs: "qcow2",
      links: [{ kind: "backing file", name: "base.qcow2", path: base, verdict: "ok", format: "qcow2" }],
    });
    expect(doc.backingChain).toEqual([{ filename: base, format: "qcow2" }]);
    r = await cli(["info", img]);
    expect(r.out).toContain("safety: safe\n");
    expect(r.out).toContain(`backing file "base.qcow2" -> ${base}: ok`);
    r = await cli(["check", "--json", img]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).safety.verdict).toBe("safe");

    // a self-contained qcow2 named .img (most cloud images) is not "format confusion"
    const plain = join(root, "plain.img");
    await qemuImg(["convert", "-O", "qcow2", base, plain]);
    r = await cli(["info", "--json", plain]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).safety).toMatchObject({
      verdict: "safe",
      namedFormat: "raw",
      links: [],
      warnings: [],
    });
    const evil = join(root, "evil.img");
    await qemuImg(["create", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", evil, "1M"]);
    for (const cmd of ["info", "check"]) {
      r = await cli([cmd, "--json", evil]);
      expect(r.code, cmd).toBe(3);
      const s = JSON.parse(r.out).safety;
      expect(s).toMatchObject({
        verdict: "unsafe",
        namedFormat: "raw",
        probedFormat: "qcow2",
        openedAs: "qcow2",
      });
      expect(s.links).toEqual([
        expect.objectContaining({
          name: "/etc/passwd",
          target: "/etc/passwd",
          verdict: "refused",
          reason: "outside",
          trust: "/etc",
        }),
      ]);
      expect(s.warnings.join(" ")).toMatch(/format confusion: its name says raw but its bytes are qcow2/);
      r = await cli([cmd, evil]);
      expect(r.out).toContain("safety: unsafe");
      expect(r.out).toContain(`backing file "/etc/passwd" -> /etc/passwd: refused`);
    }
  });
});

describe("guest symlinks are resolved inside the guest, never on the host", () => {
  it("cat / get through a guest symlink naming a host path read the guest (or nothing)", async () => {
    const root = await tempDir("guestlink-");
    const secret = join(root, "secret.txt");
    await writeFile(secret, SECRET);
    const img = join(root, "g.qcow2");
    let r = await cli([
      "customize",
      await baseImage(),
      "-o",
      img,
      "--link",
      `${secret}:/leak`,
      "--link",
      "/etc/hostname:/hn",
    ]);
    expect(r.code, r.err).toBe(0);
    r = await cli(["cat", img, "/leak"]);
    expect(r.code).toBe(4); // the guest has no such path
    expect(r.out.includes(MARK)).toBe(false);
    r = await cli(["cat", img, "/hn"]);
    expect([r.code, r.out]).toEqual([0, "localhost.localdomain\n"]);
    const out = join(root, "got");
    r = await cli(["get", img, "/leak", out]);
    expect(r.code, r.err).toBe(4); // followed inside the guest, where the target does not exist
    await expect(lstat(out)).rejects.toThrow();
    await expectNoLeak(root, [secret]);
  });
});
