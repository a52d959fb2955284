/**
 * customize --rpm with signatures: --rpm-key and --rpm-signature, the guest's own keyring
 * (/etc/pki/rpm-gpg, read at the time the --rpm step runs), and a refused package leaving the image
 * byte-identical. Packages are signed by rpmsign with a throwaway gpg key.
 */
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, findTool, runTool, runToolOk, tempDir } from "@imgpatch/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { baseImage } from "../src/main-job.js";
import { cliInProcess } from "./support/cli-in-process.js";

const cli = (args: string[]) => cliInProcess(args);
const sha = async (p: string) =>
  createHash("sha256")
    .update(await readFile(p))
    .digest("hex");

const FIXTURE = new URL("../../../test-fixtures/rpm/out/imgpatch-mini-gzip.noarch.rpm", import.meta.url)
  .pathname;

describeWithTools(["gpg", "gpgconf", "rpmsign"], "customize --rpm signature policy", () => {
  let dir = "";
  let home = "";
  let key = "";
  let signed = "";
  let keyId = "";
  const env = () => ({ GNUPGHOME: home });

  beforeAll(async () => {
    dir = await tempDir("cli-rpm-sig-");
    home = join(dir, "gnupg");
    await mkdir(home, { mode: 0o700 });
    const gpg = (args: string[]) =>
      runToolOk("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", "", ...args], {
        env: env(),
      });
    await gpg(["--quick-gen-key", "CLI test <cli@test>", "ed25519", "sign", "never"]);
    key = join(dir, "RPM-GPG-KEY-cli");
    await writeFile(key, await gpg(["--armor", "--export", "cli@test"]));
    keyId =
      /^pub:[^:]*:[^:]*:[^:]*:([0-9A-F]{16}):/m
        .exec((await gpg(["--with-colons", "--list-keys", "cli@test"])).toString())?.[1]
        ?.slice(8)
        .toLowerCase() ?? "";
    signed = join(dir, "signed.rpm");
    await copyFile(FIXTURE, signed);
    await runToolOk(
      "rpmsign",
      [
        "--addsign",
        "--define",
        "_gpg_name cli@test",
        "--define",
        `_gpg_path ${home}`,
        "--define",
        `__gpg ${findTool("gpg")}`,
        signed,
      ],
      { env: env() },
    );
  }, 60_000);
  afterAll(async () => {
    await runTool("gpgconf", ["--kill", "all"], { env: env() });
  });

  it("a signed package with an unknown key is refused (NOKEY) and the image stays byte-identical", async () => {
    const img = join(dir, "refused.qcow2");
    await copyFile(await baseImage(), img);
    const before = await sha(img);
    const r = await cli(["customize", img, "--in-place", "--rpm", signed]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain(`NOKEY key ID ${keyId}`);
    expect(r.err).toContain("--rpm-key");
    expect(await sha(img)).toBe(before);
    const dry = await cli(["customize", img, "--dry-run", "--rpm", signed]);
    expect(dry.code).not.toBe(0);
    expect(dry.err).toContain(`NOKEY key ID ${keyId}`);
  });

  it("--rpm-key trusts the key; --rpm-signature ignore skips the check; required refuses unsigned", async () => {
    const out = join(dir, "keyed.qcow2");
    let r = await cli(["customize", await baseImage(), "--overlay", out, "--rpm-key", key, "--rpm", signed]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    r = await cli([
      "customize",
      await baseImage(),
      "--overlay",
      join(dir, "ignored.qcow2"),
      "--rpm-signature",
      "ignore",
      "--rpm",
      signed,
    ]);
    expect(r.code).toBe(0);
    const img = join(dir, "unsigned.qcow2");
    await copyFile(await baseImage(), img);
    const before = await sha(img);
    r = await cli(["customize", img, "--in-place", "--rpm-signature", "required", "--rpm", FIXTURE]);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/is not signed/);
    expect(await sha(img)).toBe(before);
    r = await cli([
      "customize",
      await baseImage(),
      "--dry-run",
      "--rpm-signature",
      "sometimes",
      "--rpm",
      FIXTURE,
    ]);
    expect(r.code).toBe(2);
  });

  it("elements --rpm takes the same --rpm-key / --rpm-signature", async () => {
    let r = await cli(["elements", await baseImage(), "--dry-run", "--rpm", signed]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain(`NOKEY key ID ${keyId}`);
    r = await cli(["elements", await baseImage(), "--dry-run", "--rpm-key", key, "--rpm", signed]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    r = await cli(["elements", await baseImage(), "--dry-run", "--rpm-signature", "ignore", "--rpm", signed]);
    expect(r.code).toBe(0);
  });

  it("the guest's keyring: a key uploaded to /etc/pki/rpm-gpg by an earlier step is trusted", async () => {
    const out = join(dir, "guestkey.qcow2");
    const r = await cli([
      "customize",
      await baseImage(),
      "--overlay",
      out,
      "--mkdir",
      "/etc/pki/rpm-gpg",
      "--upload",
      `${key}:/etc/pki/rpm-gpg/RPM-GPG-KEY-cli`,
      "--rpm",
      signed,
    ]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
  });
});
