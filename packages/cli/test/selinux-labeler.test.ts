/**
 * The labelling GuestFs without root: a MemoryGuestFs guest holding the RHEL-style fixture policy,
 * edited through the wrapper; every label written is compared with matchpathcon (no root needed)
 * for the path the file really has.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expandHomedirTemplate, parseFileContexts } from "@imgpatch/selinux";
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

  const DEBIAN_FILES = "/etc/selinux/default/contexts/files";
  const DEBIAN_STORE = "/var/lib/selinux/default/active";
  it.skipIf(!existsSync(`${DEBIAN_STORE}/homedir_template`))(
    "a user added in the job gets its home's labels from the expanded homedir_template",
    async () => {
      // Debian's refpolicy and store; the shipped homedirs knows /home and /root only
      const inner = new MemoryGuestFs();
      await inner.mkdir(DEBIAN_FILES, { recursive: true });
      await inner.mkdir(DEBIAN_STORE, { recursive: true });
      await inner.mkdir("/srv", { recursive: true });
      await inner.writeFile("/etc/selinux/config", "SELINUX=enforcing\nSELINUXTYPE=default\n");
      for (const f of ["file_contexts", "file_contexts.homedirs", "file_contexts.subs_dist"])
        await inner.writeFile(`${DEBIAN_FILES}/${f}`, readFileSync(`${DEBIAN_FILES}/${f}`));
      for (const f of ["homedir_template", "seusers", "users_extra"])
        await inner.writeFile(`${DEBIAN_STORE}/${f}`, readFileSync(`${DEBIAN_STORE}/${f}`));
      const passwd = "root:x:0:0:root:/root:/bin/bash\n";
      await inner.writeFile("/etc/passwd", passwd);
      const fs = await SelinuxLabelingGuestFs.open(inner);
      expect(fs.policy?.homedirsExpanded).toBe(false); // the shipped file is what genhomedircon writes
      await fs.writeFile("/etc/passwd", `${passwd}bob:x:1002:1002::/srv/users/bob:/bin/bash\n`);
      await fs.mkdir("/srv/users/bob/.ssh", { recursive: true });
      await fs.writeFile("/srv/users/bob/.ssh/authorized_keys", "ssh-ed25519 AAAA x\n");
      await fs.flushLabels();
      expect(fs.policy?.homedirsExpanded).toBe(true);
      // oracle: matchpathcon over the policy with the homedirs genhomedircon writes for that passwd
      // (our expansion, equal to semodule -B's output: packages/selinux/test/homedirs-oracle.test.ts)
      const dir = await tempDir("imgpatch-sel-home-");
      for (const f of ["file_contexts", "file_contexts.subs_dist"])
        writeFileSync(join(dir, f), readFileSync(`${DEBIAN_FILES}/${f}`));
      const store = (f: string) => readFileSync(`${DEBIAN_STORE}/${f}`, "latin1");
      const fc = join(dir, "file_contexts");
      writeFileSync(
        `${fc}.homedirs`,
        expandHomedirTemplate({
          template: store("homedir_template"),
          seusers: store("seusers"),
          usersExtra: store("users_extra"),
          passwd: `${passwd}bob:x:1002:1002::/srv/users/bob:/bin/bash\n`,
          policySpecs: parseFileContexts(readFileSync(fc), fc),
        }),
      );
      for (const [p, t] of [
        ["/srv/users/bob/.ssh/authorized_keys", "file"],
        ["/srv/users/bob/.ssh", "dir"],
        ["/srv/users/bob", "dir"],
        ["/srv/users", "dir"],
      ] as const) {
        const want = (await runToolOk("matchpathcon", ["-N", "-n", "-f", fc, "-m", t, p])).toString().trim();
        expect([p, await label(inner, p)]).toEqual([p, want]);
      }
      expect(await label(inner, "/srv/users/bob/.ssh/authorized_keys")).toBe(
        "unconfined_u:object_r:ssh_home_t:s0",
      );
    },
  );
});
