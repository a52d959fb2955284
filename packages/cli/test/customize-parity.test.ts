/**
 * virt-customize parity operations: passwords (crypt(3) hashes checked by openssl and Python's
 * crypt, the libc implementation), --edit (Perl itself runs the same expression as the oracle),
 * --truncate/--truncate-recursive, --scrub (the file's old blocks read back overwritten), --run and
 * --run-command (queued for the first boot) — end to end on the base guest, e2fsck and debugfs after.
 */
import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  debugfs,
  debugfsBlocks,
  debugfsCat,
  debugfsStat,
  describeWithTools,
  e2fsck,
  qemuImg,
  runTool,
  tempDir,
} from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { type CliIo, runCli } from "../src/commands/main.js";
import { compileEditExpr, EditExprError, editText } from "../src/customize/edit-expr.js";
import { parsePasswordSelector } from "../src/customize/passwords.js";
import { type CryptMethod, cryptPassword } from "../src/guest/crypt.js";
import { baseImage } from "../src/main-job.js";

const ROOT_PART = 67584 * 512;
const EPOCH = 1_700_000_000;

async function cli(args: string[], env: Record<string, string> = {}) {
  let out = "";
  let err = "";
  const io: CliIo = { out: (t) => (out += t), err: (t) => (err += t), env: { ...env } };
  const code = await runCli(args, io);
  return { code, out, err };
}

const SALT = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const saltArb = (max: number) =>
  fc.string({ unit: fc.constantFrom(...SALT.split("")), minLength: 1, maxLength: max });
// openssl prints <NULL> for an empty password: that case is checked against libc below.
const passwordArb = fc
  .string({ unit: "grapheme-ascii", minLength: 1, maxLength: 40 })
  .filter((p) => !p.includes("\n"));

/** Python's crypt module is libc's crypt(3): the system verifying the hash, as a login would. */
async function libcVerifies(password: string, hash: string): Promise<boolean> {
  const r = await runTool("python3", [
    "-W",
    "ignore",
    "-c",
    "import crypt,sys; print(crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2])",
    password,
    hash,
  ]);
  return r.stdout.toString().trim() === "True";
}

describeWithTools(["openssl", "python3"], "crypt(3) hashes", () => {
  for (const [method, flag, max] of [
    ["sha512", "-6", 16],
    ["sha256", "-5", 16],
    ["md5", "-1", 8],
  ] as const) {
    it(`${method}: the same hash as openssl passwd ${flag} (random passwords and salts)`, async () => {
      await fc.assert(
        fc.asyncProperty(passwordArb, saltArb(max), async (pw, salt) => {
          const ours = cryptPassword(pw, method as CryptMethod, { salt });
          const r = await runTool("openssl", ["passwd", flag, "-salt", salt, "-stdin"], { input: `${pw}\n` });
          expect(ours).toBe(r.stdout.toString().trim());
        }),
        { numRuns: 25 },
      );
    });
  }
  it("explicit rounds and random salts verify with libc crypt(3)", async () => {
    const h = cryptPassword("correct horse", "sha512", { rounds: 12345 });
    expect(h).toMatch(/^\$6\$rounds=12345\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{86}$/);
    expect(await libcVerifies("correct horse", h)).toBe(true);
    expect(await libcVerifies("correct horsf", h)).toBe(false);
    expect(await libcVerifies("pässwörd", cryptPassword("pässwörd", "sha256"))).toBe(true);
    for (const m of ["sha512", "sha256", "md5"] as const)
      expect(await libcVerifies("", cryptPassword("", m))).toBe(true);
  });
});

describeWithTools(["perl"], "--edit: Perl's own reading of the expression", () => {
  const EXPRS = [
    "s/^root:[^:]*:/root::/",
    "s/foo/bar/",
    "s/o/0/g",
    "s/(\\w+)=(\\w+)/$2=$1/g",
    "s{^#\\s*(PermitRootLogin)\\s+\\w+}{$1 no}i",
    "s|/usr/bin|/opt/bin|g",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a Perl replacement, not a template
    "s/a(b)?c/[\\1|${1}|$&]/g",
    "s/ +$//",
    "s/^/> /",
    "s/(\\d+)/<$1>/g",
    "s/\\bword\\b/WORD/gi",
    "s/x # comment\n  y/Z/x",
    "s/(e)/\\u$1/g",
    "s/(\\w+)/\\U$1\\E!/",
    "s/\\t/    /g",
    "s/.*//s",
    "s/^(.)(.*)$/$2$1/",
  ];
  const lineArb = fc.string({
    unit: fc.constantFrom(..."abcefoorxyz=#:/ \t0123456789wordWORDusrbinPermitRootLogin".split("")),
    maxLength: 40,
  });
  it("every expression gives the text perl gives, line by line (chomp; EXPR; print)", async () => {
    const texts = fc.sample(fc.array(lineArb, { maxLength: 8 }), { numRuns: 30, seed: 11 });
    texts.push(["root:$6$x:19000:0:99999:7:::", "#PermitRootLogin yes", "a=b c=d", "abc ac  "]);
    // One perl per expression reads every text, each followed by a separator line it copies
    // unedited (the loop keeps no state between lines, so this is one run per text).
    const SEP = "\0imgpatch-text-end\0";
    for (const expr of EXPRS) {
      const edit = compileEditExpr(expr);
      const inputs = texts.map((lines) => lines.map((l) => `${l}\n`).join(""));
      const r = await runTool(
        "perl",
        [
          "-e",
          `while (<STDIN>) { if ($_ eq "\\0imgpatch-text-end\\0\\n") { print STDOUT $_; next } chomp; ${expr}; print STDOUT $_, "\\n" }`,
        ],
        { input: inputs.map((t) => `${t}${SEP}\n`).join("") },
      );
      expect(r.exitCode, r.stderr).toBe(0);
      const outputs = r.stdout.toString().split(`${SEP}\n`);
      expect(outputs.length, expr).toBe(inputs.length + 1);
      for (const [i, text] of inputs.entries()) {
        expect(editText(text, edit), `${expr} on ${JSON.stringify(text)}`).toBe(outputs[i]);
      }
    }
  });
  it("refuses what it cannot translate instead of misreading it", () => {
    for (const bad of [
      "s/(?i)x/y/",
      "s/a++/b/",
      "s/(?>a)/b/",
      "s/x/$foo/",
      "s/x/y/e",
      "y/a/b/",
      "s/x/y/q",
      "s/\\Gx/y/",
    ]) {
      expect(() => compileEditExpr(bad), bad).toThrow(EditExprError);
    }
  });
});

describeWithTools(
  ["qemu-img", "e2fsck", "debugfs", "python3"],
  "customize parity operations, end to end",
  () => {
    it("passwords, edit, truncate, scrub and run on the base guest", async () => {
      const dir = await tempDir("parity-");
      const base = join(dir, "base.qcow2");
      await copyFile(await baseImage(), base);
      const out = join(dir, "out.qcow2");
      const pwfile = join(dir, "pw");
      await writeFile(pwfile, "from a file\nsecond line ignored\n");
      const secret = "S3cret-Passw0rd";
      const prep = await cli(
        [
          "customize",
          base,
          "--overlay",
          join(dir, "prep.qcow2"),
          "--write",
          `/opt/scrub-me:${"SCRUB-ME-PLEASE;".repeat(5000)}`,
          "--mkdir",
          "/var/log/app/sub",
          "--write",
          "/var/log/app/a.log:aaa",
          "--write",
          "/var/log/app/sub/b.log:bbb",
          "--link",
          "/etc/passwd:/var/log/app/sub/passwd-link",
          "--write",
          "/etc/ssh/sshd_config:#PermitRootLogin yes\nPasswordAuthentication yes\n",
        ],
        { SOURCE_DATE_EPOCH: String(EPOCH) },
      );
      expect(prep.code, prep.err).toBe(0);
      // Where the file's data lies before the scrub.
      const prepRaw = join(dir, "prep.raw");
      await qemuImg(["convert", "-O", "raw", join(dir, "prep.qcow2"), prepRaw]);
      const blocks = await debugfsBlocks({ path: prepRaw, offset: ROOT_PART }, "/opt/scrub-me");
      expect(blocks.length).toBeGreaterThan(10);

      const r = await cli(
        [
          "customize",
          join(dir, "prep.qcow2"),
          "--overlay",
          out,
          "--json",
          "--root-password",
          `password:${secret}`,
          "--password",
          `centos:file:${pwfile}`,
          "--password-crypto",
          "sha256",
          "--edit",
          "/etc/ssh/sshd_config:s/^#?PermitRootLogin\\s+\\w+/PermitRootLogin no/",
          "--truncate",
          "/var/log/app/a.log",
          "--truncate-recursive",
          "/var/log/app",
          "--run-command",
          "echo hello > /run/hello",
          // Last: nothing allocates after it, so its freed blocks still show what the scrub left.
          "--scrub",
          "/opt/scrub-me",
        ],
        { SOURCE_DATE_EPOCH: String(EPOCH + 86_400) },
      );
      expect(r.code, r.err).toBe(0);
      expect(r.out).not.toContain(secret);
      expect(r.out).not.toContain("from a file");
      const raw = join(dir, "out.raw");
      await qemuImg(["convert", "-O", "raw", out, raw]);
      const fs = { path: raw, offset: ROOT_PART };
      const check = await e2fsck(fs);
      expect(check.clean, check.output).toBe(true);

      const shadow = (await debugfsCat(fs, "/etc/shadow")).toString().split("\n");
      const root = shadow.find((l) => l.startsWith("root:"))!.split(":");
      const centos = shadow.find((l) => l.startsWith("centos:"))!.split(":");
      expect(root[1]).toMatch(/^\$5\$/); // --password-crypto applies wherever it stands
      expect(await libcVerifies(secret, root[1]!)).toBe(true);
      expect(await libcVerifies("from a file", centos[1]!)).toBe(true);
      expect(root[2]).toBe(String(Math.floor((EPOCH + 86_400) / 86_400)));
      expect(root.slice(3)).toEqual(["0", "99999", "7", "", "", ""]);
      const st = await debugfsStat(fs, "/etc/shadow");
      expect(st.mode & 0o7777).toBe(0);
      expect([st.uid, st.gid]).toEqual([0, 0]);

      expect((await debugfsCat(fs, "/etc/ssh/sshd_config")).toString()).toBe(
        "PermitRootLogin no\nPasswordAuthentication yes\n",
      );
      expect((await debugfsStat(fs, "/var/log/app/a.log")).size).toBe(0);
      expect((await debugfsStat(fs, "/var/log/app/sub/b.log")).size).toBe(0);
      expect((await debugfsCat(fs, "/etc/passwd")).length).toBeGreaterThan(100); // the symlink was not followed
      expect(await debugfs(fs, ["stat /opt/scrub-me"], { allowErrors: true })).not.toMatch(/Inode:/);
      // The scrubbed file's old blocks hold the last pass (0xff), not its text.
      const img = await readFile(raw);
      const size = 16 * 5000;
      blocks.forEach((b, i) => {
        const at = ROOT_PART + b * 4096;
        const n = Math.min(4096, size - i * 4096); // the file's bytes in its i-th block
        const bad = img.subarray(at, at + n).findIndex((x) => x !== 0xff);
        expect(
          bad,
          `block ${b} (#${i} of ${blocks.length}) byte ${bad}: ${img.subarray(at + bad, at + bad + 24).toString()}`,
        ).toBe(-1);
      });
      expect(img.includes("SCRUB-ME-PLEASE")).toBe(false);
      const queued = await debugfs(fs, ["ls -p /var/lib/imgpatch/firstboot/pending"], { allowErrors: true });
      expect(queued).toMatch(/echo/);
    });

    it("random passwords are reported once and verify; disabled and locked selectors", async () => {
      const dir = await tempDir("parity-");
      const out = join(dir, "out.qcow2");
      const r = await cli(
        [
          "customize",
          await baseImage(),
          "--overlay",
          out,
          "--root-password",
          "random",
          "--password",
          "centos:locked:disabled",
        ],
        { SOURCE_DATE_EPOCH: String(EPOCH) },
      );
      expect(r.code, r.err).toBe(0);
      const pw = /random password of root: (\S+)/.exec(r.out)?.[1];
      expect(pw).toMatch(/^[A-Za-z0-9]{16}$/);
      const raw = join(dir, "out.raw");
      await qemuImg(["convert", "-O", "raw", out, raw]);
      const shadow = (await debugfsCat({ path: raw, offset: ROOT_PART }, "/etc/shadow")).toString();
      const root = /^root:([^:]*):/m.exec(shadow)![1]!;
      expect(await libcVerifies(pw!, root)).toBe(true);
      expect(/^centos:([^:]*):/m.exec(shadow)![1]).toBe("!*");
      expect(parsePasswordSelector("locked:password:x")).toEqual({
        kind: "locked",
        inner: { kind: "password", password: "x" },
      });
      const bad = await cli([
        "customize",
        await baseImage(),
        "--overlay",
        join(dir, "x.qcow2"),
        "--root-password",
        "pw",
      ]);
      expect(bad.code).toBe(2);
    });
  },
);
