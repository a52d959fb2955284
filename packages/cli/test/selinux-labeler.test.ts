/**
 * The labelling GuestFs without root: a MemoryGuestFs guest holding the RHEL-style fixture policy,
 * edited through the wrapper; every label written is compared with matchpathcon (no root needed)
 * for the path the file really has.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeWithTools, runToolOk, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { type CliIo, runCli } from "../src/commands/main.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";
import { SelinuxLabelingGuestFs } from "../src/guest/selinux-labeler.js";

const FIXTURE = join(import.meta.dirname, "../../selinux/test/fixtures/rhel-like");
const FILES = "/etc/selinux/targeted/contexts/files";
const FC = join(FIXTURE, FILES, "file_contexts");

async function guest(): Promise<MemoryGuestFs> {
  const fs = new MemoryGuestFs();
  for (const d of [FILES, "/run", "/usr/lib/systemd/system", "/home/bob", "/opt"])
    await fs.mkdir(d, { recursive: true });
  await fs.writeFile("/etc/selinux/config", "SELINUX=permissive\nSELINUXTYPE=targeted\n");
  for (const f of readdirSync(join(FIXTURE, FILES)))
    await fs.writeFile(`${FILES}/${f}`, readFileSync(join(FIXTURE, FILES, f)));
  await fs.mkdir("/var", { recursive: true });
  await fs.symlink("../run", "/var/run");
  await fs.symlink("usr/lib", "/lib");
  return fs;
}

const label = async (fs: MemoryGuestFs, p: string) => {
  const v = await fs.getxattr(p, "security.selinux");
  return v === undefined ? "<<none>>" : Buffer.from(v).toString("latin1").replace(/\0$/, "");
};
const oracle = async (p: string, type: string) =>
  (await runToolOk("matchpathcon", ["-N", "-n", "-f", FC, "-m", type, p])).toString().trim();

describeWithTools(["matchpathcon", "mke2fs", "debugfs"], "SelinuxLabelingGuestFs (rootless)", () => {
  it("labels created, replaced, linked, renamed and moved paths at the flush, by their real paths", async () => {
    const inner = await guest();
    const fs = await SelinuxLabelingGuestFs.open(inner);
    expect(fs.active).toBe(true);
    await fs.mkdir("/opt/app/bin", { recursive: true });
    await fs.writeFile("/opt/app/bin/tool", "x");
    await fs.writeFile("/var/run/sshd.pid", "1"); // lives at /run/sshd.pid
    await fs.writeFile("/lib/systemd/system/heat.service", "[Unit]\n"); // /usr/lib/systemd/system
    await fs.mkdir("/tmp-stage/sub", { recursive: true });
    await fs.writeFile("/tmp-stage/sub/f.conf", "x");
    await fs.rename("/tmp-stage", "/etc/cloud"); // a moved tree takes the labels of where it lands
    await fs.mknod("/run/initctl", "fifo", 0o600);
    await fs.writeFile("/home/bob/.bashrc", "x");
    await fs.link("/home/bob/.bashrc", "/home/bob/.bashrc-link");
    await fs.writeFile("/etc/explicit", "x");
    await fs.setxattr("/etc/explicit", "security.selinux", Buffer.from("u:r:mine_t:s0\0"));
    await fs.writeFile("/etc/removed", "x");
    await fs.unlink("/etc/removed");
    // nothing is labelled before the flush (no reads between the editor's writes)
    expect(await label(inner, "/opt/app/bin/tool")).toBe("<<none>>");
    expect(await fs.flushLabels()).toBeGreaterThan(10);
    const expected: Array<[string, string]> = [
      ["/opt/app", "d"],
      ["/opt/app/bin", "d"],
      ["/opt/app/bin/tool", "f"],
      ["/run/sshd.pid", "f"],
      ["/usr/lib/systemd/system/heat.service", "f"],
      ["/etc/cloud", "d"],
      ["/etc/cloud/sub", "d"],
      ["/etc/cloud/sub/f.conf", "f"],
      ["/run/initctl", "p"],
      ["/home/bob/.bashrc", "f"],
    ];
    for (const [p, t] of expected) expect(`${p} ${await label(inner, p)}`).toBe(`${p} ${await oracle(p, t)}`);
    expect(await label(inner, "/etc/explicit")).toBe("u:r:mine_t:s0");
    // and the whole guest, offline: every directory and file as matchpathcon says
    const report = await fs.relabelAll();
    expect(report?.changed).toBeGreaterThan(20);
    for (const [p, t] of [
      ["/etc/selinux/config", "f"],
      ["/usr/lib", "d"],
      ["/home/bob", "d"],
      ["/", "d"],
    ] as const)
      expect(`${p} ${await label(inner, p)}`).toBe(`${p} ${await oracle(p, t)}`);
  });

  it("passes through without a policy (disabled)", async () => {
    const inner = await guest();
    await inner.writeFile("/etc/selinux/config", "SELINUX=disabled\nSELINUXTYPE=targeted\n");
    const fs = await SelinuxLabelingGuestFs.open(inner);
    expect(fs.active).toBe(false);
    await fs.writeFile("/opt/x", "x");
    expect(await fs.flushLabels()).toBe(0);
    expect(await fs.relabelAll()).toBeUndefined();
    expect(await label(inner, "/opt/x")).toBe("<<none>>");
  });

  it("a policy we cannot follow is a typed error naming file and line; --no-selinux-labels goes on without labels", async () => {
    const dir = await tempDir("sel");
    const files = join(dir, "root/etc/selinux/targeted/contexts/files");
    mkdirSync(files, { recursive: true });
    writeFileSync(join(dir, "root/etc/os-release"), "ID=centos\n");
    writeFileSync(join(dir, "root/etc/selinux/config"), "SELINUX=enforcing\nSELINUXTYPE=targeted\n");
    writeFileSync(join(files, "file_contexts"), "/.* u:r:t:s0\n/x(?i)y u:r:t:s0\n");
    const image = join(dir, "in.img");
    execFileSync("mke2fs", ["-q", "-t", "ext4", "-d", join(dir, "root"), image, "16M"]);
    let err = "";
    const io: CliIo = { out: () => {}, err: (t) => (err += t), env: {} };
    const out = join(dir, "out.img");
    // expressions are translated when a path could meet them (its literal prefix "/x"): a write
    // to /xmotd does, and fails before anything is written
    expect(await runCli(["customize", image, "-o", out, "--write", "/xmotd:hi"], io)).not.toBe(0);
    expect(err).toContain('contexts/files/file_contexts: line 2: regular expression "/x(?i)y"');
    expect(readdirSync(dir).sort()).toEqual(["in.img", "root"]); // no output left behind
    expect(
      await runCli(["customize", image, "-o", out, "--no-selinux-labels", "--write", "/etc/motd:hi"], io),
    ).toBe(0);
    const ea = execFileSync("debugfs", ["-R", "ea_list /etc/motd", out], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    expect(ea.toString()).not.toContain("security.selinux");
    const cat = execFileSync("debugfs", ["-R", "cat /etc/motd", out], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    expect(cat.toString()).toBe("hi");
  });
});
