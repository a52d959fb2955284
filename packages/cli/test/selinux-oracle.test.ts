/**
 * SELinux labels written through openGuest, checked by libselinux's own tools over the kernel's view:
 * the output is loop-mounted read-only and `setfiles -n -v -F -r MNT` (policycoreutils) with the
 * guest's own file_contexts must report nothing to fix among the paths we touched (it still
 * reports the untouched, unlabelled files mke2fs made — the oracle sees what we do not label),
 * and `getfattr` values equal `matchpathcon -m TYPE`. After `relabelAll()` setfiles reports
 * nothing at all. Policies: Debian's refpolicy and the RHEL-targeted-style fixture.
 */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, lstatSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeWithTools, fixture, runTool, runToolOk, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { type CliIo, runCli } from "../src/commands/main.js";
import { applyOperation, parseOperation } from "../src/customize/operations.js";
import { selinuxLabeler } from "../src/guest/selinux-labeler.js";
import { openGuest } from "../src/image/open-guest.js";
import { baseImage } from "../src/main-job.js";

const DEBIAN_FILES = "/etc/selinux/default/contexts/files";
const FIXTURE = join(import.meta.dirname, "../../selinux/test/fixtures/rhel-like/etc/selinux");
const isRoot = process.getuid?.() === 0;

interface Policy {
  name: string;
  type: string;
  /** Copies the policy into the tree's /etc/selinux. */
  install(etcSelinux: string): void;
}

const POLICIES: Policy[] = [
  {
    name: "Debian refpolicy",
    type: "default",
    install(dir) {
      const files = join(dir, "default/contexts/files");
      mkdirSync(files, { recursive: true });
      for (const f of ["file_contexts", "file_contexts.homedirs", "file_contexts.subs_dist"])
        cpSync(join(DEBIAN_FILES, f), join(files, f));
    },
  },
  {
    name: "RHEL-targeted-style fixture",
    type: "targeted",
    install(dir) {
      cpSync(join(FIXTURE, "targeted"), join(dir, "targeted"), { recursive: true });
    },
  },
];

/** A small guest tree: merged-/usr style, /var/run → ../run, users, SELinux enforcing. */
function guestTree(root: string, policy: Policy): void {
  for (const d of [
    "etc/ssh",
    "etc/systemd/system",
    "usr/bin",
    "usr/lib/systemd/system",
    "run",
    "home/bob",
    "root",
    "opt",
    "var/log",
    "tmp",
  ])
    mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, "etc/os-release"), 'ID=centos\nVERSION_ID="9"\n');
  writeFileSync(
    join(root, "etc/passwd"),
    "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/bash\n",
  );
  writeFileSync(join(root, "etc/group"), "root:x:0:\nbob:x:1000:\n");
  writeFileSync(join(root, "etc/selinux-marker"), "");
  mkdirSync(join(root, "etc/selinux"), { recursive: true });
  writeFileSync(join(root, "etc/selinux/config"), `SELINUX=enforcing\nSELINUXTYPE=${policy.type}\n`);
  policy.install(join(root, "etc/selinux"));
  execFileSync("ln", ["-s", "../run", join(root, "var/run")]);
  execFileSync("ln", ["-s", "usr/lib", join(root, "lib")]);
}

/** What we touch through the labelled GuestFs (paths as the kernel will see them, with types). */
async function edit(
  image: string,
  out: string,
): Promise<{ touched: Array<[string, string]>; labelled: number; atCreate: number }> {
  const g = await openGuest(image, { output: out, now: new Date("2026-01-01T00:00:00Z") });
  try {
    const fs = g.fs;
    expect(selinuxLabeler(fs)?.active).toBe(true);
    await fs.mkdir("/opt/heat/bin/deep", { recursive: true });
    await fs.writeFile("/opt/heat/bin/deep/tool", "#!/bin/sh\n", { mode: 0o755 });
    await fs.writeFile("/opt/heat/heat.conf", "x");
    await fs.rename("/opt/heat", "/usr/local-heat"); // moved directory: its subtree is relabelled
    await fs.writeFile("/etc/os-collect-config.conf", "[DEFAULT]\n");
    await fs.writeFile("/var/run/heat.pid", "1\n"); // through the /var/run symlink: lives at /run
    await fs.writeFile("/lib/systemd/system/heat.service", "[Service]\n"); // /lib → usr/lib
    await fs.mkdir("/etc/systemd/system/multi-user.target.wants", { recursive: true });
    await fs.symlink(
      "/usr/lib/systemd/system/heat.service",
      "/etc/systemd/system/multi-user.target.wants/heat.service",
    );
    await fs.mknod("/run/initctl", "fifo", 0o600);
    await fs.mknod("/run/agent.sock", "socket", 0o660);
    // a hard link shares one inode (one label): link within one label's reach
    await fs.link("/usr/local-heat/bin/deep/tool", "/usr/local-heat/bin/tool-link");
    await fs.writeFile(
      "/etc/passwd",
      "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/bash\n",
    ); // replaced
    // a label set explicitly is kept; a path removed before the commit is not labelled
    await fs.writeFile("/etc/custom.conf", "x");
    await fs.setxattr(
      "/etc/custom.conf",
      "security.selinux",
      new TextEncoder().encode("system_u:object_r:custom_t:s0\0"),
    );
    await fs.writeFile("/etc/gone", "x");
    await fs.unlink("/etc/gone");
    const ctx = { now: new Date("2026-01-01T00:00:00Z") };
    await applyOperation(fs, parseOperation("ssh-inject", "bob:string:ssh-ed25519 AAAAC3Nz bob@x"), ctx);
    await applyOperation(fs, parseOperation("ssh-inject", "root:string:ssh-ed25519 AAAAC3Nz root@x"), ctx);
    await applyOperation(fs, parseOperation("firstboot-command", "touch /var/log/fb"), ctx);
    await applyOperation(fs, parseOperation("hostname", "agent1"), ctx);
    const labeler = selinuxLabeler(fs);
    await g.commit();
    const labelled = labeler?.stats.labelled ?? 0;
    const atCreate = labeler?.stats.atCreate ?? 0;
    const touched: Array<[string, string]> = [
      ["/usr/local-heat", "d"],
      ["/usr/local-heat/bin", "d"],
      ["/usr/local-heat/bin/deep", "d"],
      ["/usr/local-heat/bin/deep/tool", "f"],
      ["/usr/local-heat/heat.conf", "f"],
      ["/usr/local-heat/bin/tool-link", "f"],
      ["/etc/os-collect-config.conf", "f"],
      ["/run/heat.pid", "f"],
      ["/usr/lib/systemd/system/heat.service", "f"],
      ["/etc/systemd/system/multi-user.target.wants", "d"],
      ["/etc/systemd/system/multi-user.target.wants/heat.service", "l"],
      ["/run/initctl", "p"],
      ["/run/agent.sock", "s"],
      ["/etc/passwd", "f"],
      ["/home/bob/.ssh", "d"],
      ["/home/bob/.ssh/authorized_keys", "f"],
      ["/root/.ssh", "d"],
      ["/root/.ssh/authorized_keys", "f"],
      ["/etc/hostname", "f"],
    ];
    return { touched, labelled, atCreate };
  } finally {
    await g.close();
  }
}

async function withMount<T>(image: string, f: (mnt: string) => Promise<T>): Promise<T> {
  const mnt = await tempDir("sel-mnt");
  const loop = execFileSync("losetup", ["-f", "--show", "-r", image]).toString().trim();
  try {
    execFileSync("mount", ["-o", "ro", loop, mnt]);
    try {
      return await f(mnt);
    } finally {
      execFileSync("umount", [mnt]);
    }
  } finally {
    execFileSync("losetup", ["-d", loop]);
  }
}

/** `setfiles -n -v -F -r MNT FC MNT`: the paths it would relabel (guest paths). */
async function setfilesWouldRelabel(mnt: string, fc: string): Promise<string[]> {
  const r = await runTool("setfiles", ["-n", "-v", "-F", "-r", mnt, fc, mnt]);
  if (r.exitCode !== 0) throw new Error(`setfiles failed (${r.exitCode}): ${r.stderr}`);
  const text = r.stdout.toString("utf8") + r.stderr;
  return [...text.matchAll(/^Would relabel (\S+) from/gm)].map((m) => m[1].slice(mnt.length) || "/");
}

async function labelOf(mnt: string, path: string): Promise<string> {
  const r = await runTool("getfattr", ["-h", "--only-values", "-n", "security.selinux", join(mnt, path)]);
  return r.exitCode === 0 ? r.stdout.toString("latin1").replace(/\0$/, "") : "<<none>>";
}

describeWithTools(
  ["setfiles", "matchpathcon", "getfattr", "mke2fs", "losetup"],
  "SELinux labels (setfiles/matchpathcon oracles)",
  () => {
    for (const policy of POLICIES) {
      const available = policy.type !== "default" || existsSync(DEBIAN_FILES);
      it.skipIf(!isRoot || !available)(
        `${policy.name}: every path we write carries its policy label`,
        async () => {
          const dir = await tempDir("sel");
          const root = join(dir, "root");
          guestTree(root, policy);
          const image = join(dir, "in.img");
          execFileSync("mke2fs", ["-q", "-t", "ext4", "-d", root, image, "64M"]);
          const out = join(dir, "out.img");
          const { touched, labelled, atCreate } = await edit(image, out);
          expect(labelled).toBeGreaterThanOrEqual(touched.length);
          // new names in resolved directories are labelled as the editor creates them
          expect(atCreate).toBeGreaterThanOrEqual(12);
          await runToolOk("e2fsck", ["-fn", out]);
          await withMount(out, async (mnt) => {
            const fc = join(mnt, `etc/selinux/${policy.type}/contexts/files/file_contexts`);
            const would = new Set(await setfilesWouldRelabel(mnt, fc));
            // the oracle does see unlabelled files: mke2fs -d wrote none
            expect(would.has("/usr/bin")).toBe(true);
            expect(touched.filter(([p]) => would.has(p))).toEqual([]);
            expect(await labelOf(mnt, "/etc/custom.conf")).toBe("system_u:object_r:custom_t:s0");
            for (const [path, type] of touched) {
              const expected = (await runToolOk("matchpathcon", ["-N", "-n", "-f", fc, "-m", type, path]))
                .toString()
                .trim();
              expect(`${path} ${await labelOf(mnt, path)}`).toBe(`${path} ${expected}`);
            }
          });
        },
      );

      it.skipIf(!isRoot || !available)(
        `${policy.name}: relabelAll leaves setfiles nothing to do`,
        async () => {
          const dir = await tempDir("sel");
          const root = join(dir, "root");
          guestTree(root, policy);
          const image = join(dir, "in.img");
          execFileSync("mke2fs", ["-q", "-t", "ext4", "-d", root, image, "64M"]);
          const out = join(dir, "out.img");
          const g = await openGuest(image, { output: out });
          let report: Awaited<ReturnType<NonNullable<ReturnType<typeof selinuxLabeler>>["relabelAll"]>>;
          try {
            report = await selinuxLabeler(g.fs)?.relabelAll();
            await g.commit();
          } finally {
            await g.close();
          }
          expect(report?.changed).toBeGreaterThan(20);
          await runToolOk("e2fsck", ["-fn", out]);
          await withMount(out, async (mnt) => {
            const fc = join(mnt, `etc/selinux/${policy.type}/contexts/files/file_contexts`);
            expect(await setfilesWouldRelabel(mnt, fc)).toEqual([]);
          });
        },
      );
    }

    it.skipIf(!isRoot || !existsSync(DEBIAN_FILES))(
      "--rpm payload: every path rpm would write carries the label rpm would give it",
      async () => {
        const policy = POLICIES[0];
        const dir = await tempDir("sel");
        const root = join(dir, "root");
        guestTree(root, policy);
        const image = join(dir, "in.img");
        execFileSync("mke2fs", ["-q", "-t", "ext4", "-d", root, image, "64M"]);
        const rpmFile = join(
          import.meta.dirname,
          "../../../test-fixtures/rpm/out/imgpatch-demo-xz.noarch.rpm",
        );
        const payload = execFileSync("rpm", ["-qlp", rpmFile]).toString().trim().split("\n");
        expect(payload.length).toBeGreaterThan(10);
        let out = "";
        const io: CliIo = { out: (t) => (out += t), err: (t) => (out += t), env: {} };
        const result = join(dir, "rpm.img");
        expect(
          await runCli(["customize", image, "-o", result, "--rpm", rpmFile, "--rpm-owner-fallback"], io),
          out,
        ).toBe(0);
        await runToolOk("e2fsck", ["-fn", result]);
        await withMount(result, async (mnt) => {
          const fc = join(mnt, "etc/selinux/default/contexts/files/file_contexts");
          const would = new Set(await setfilesWouldRelabel(mnt, fc));
          expect(would.has("/usr/bin")).toBe(true); // untouched, unlabelled: the oracle sees them
          expect(payload.filter((p) => would.has(p))).toEqual([]);
          // every payload path written (%ghost files are not) has a label
          const written = payload.filter((p) => {
            try {
              lstatSync(join(mnt, p));
              return true;
            } catch {
              return false;
            }
          });
          expect(written.length).toBeGreaterThan(10);
          for (const p of written) expect(await labelOf(mnt, p), p).not.toBe("<<none>>");
        });
      },
    );

    it.skipIf(!isRoot || !existsSync(DEBIAN_FILES))(
      "elements (the Heat agents): every new path labelled, no marker",
      async () => {
        const dir = await tempDir("sel");
        const root = join(dir, "root");
        guestTree(root, POLICIES[0]);
        const image = join(dir, "in.img");
        execFileSync("mke2fs", ["-q", "-t", "ext4", "-d", root, image, "64M"]);
        let out = "";
        const io: CliIo = { out: (t) => (out += t), err: (t) => (out += t), env: {} };
        const result = join(dir, "out.img");
        const elementsPath = join(import.meta.dirname, "../../../test-fixtures/elements");
        const args = ["elements", image, "-o", result, "--elements-path", elementsPath];
        args.push(
          "os-collect-config",
          "os-refresh-config",
          "os-apply-config",
          "heat-config",
          "heat-config-script",
        );
        expect(await runCli(args, io), out).toBe(0);
        expect(out).toContain("SELinux: every path written was labelled from the guest's own policy");
        await runToolOk("e2fsck", ["-fn", result]);
        const fcIn = (mnt: string) => join(mnt, "etc/selinux/default/contexts/files/file_contexts");
        // mke2fs -d labelled nothing: setfiles over the input lists every path the input has
        const before = new Set(await withMount(image, (mnt) => setfilesWouldRelabel(mnt, fcIn(mnt))));
        await withMount(result, async (mnt) => {
          const after = await setfilesWouldRelabel(mnt, fcIn(mnt));
          const created = execFileSync("find", [mnt, "-xdev"])
            .toString()
            .trim()
            .split("\n")
            .map((p) => p.slice(mnt.length) || "/");
          const fresh = created.filter((p) => !before.has(p));
          expect(fresh.length).toBeGreaterThan(50);
          expect(after.filter((p) => !before.has(p))).toEqual([]);
          expect(existsSync(join(mnt, ".autorelabel"))).toBe(false);
        });
      },
    );

    it.skipIf(!isRoot)(
      "--selinux-relabel covers every mounted filesystem (GPT base: / and /boot from fstab)",
      async () => {
        const dir = await tempDir("sel");
        const result = join(dir, "out.img");
        const io: CliIo = { out: () => {}, err: () => {}, env: {} };
        expect(await runCli(["customize", await baseImage(), "-o", result, "--selinux-relabel"], io)).toBe(0);
        // partition nodes of a loop device do not always appear here: one loop per partition
        const table = JSON.parse(execFileSync("sfdisk", ["-J", result]).toString()) as {
          partitiontable: { sectorsize?: number; partitions: Array<{ start: number; size: number }> };
        };
        const ss = table.partitiontable.sectorsize ?? 512;
        const loops = table.partitiontable.partitions.map((p) =>
          execFileSync("losetup", [
            "-f",
            "--show",
            "-r",
            "-o",
            String(p.start * ss),
            "--sizelimit",
            String(p.size * ss),
            result,
          ])
            .toString()
            .trim(),
        );
        const mnt = await tempDir("sel-mnt");
        try {
          execFileSync("mount", ["-o", "ro", loops[1], mnt]);
          try {
            execFileSync("mount", ["-o", "ro", loops[0], join(mnt, "boot")]);
            try {
              const fc = join(mnt, "etc/selinux/targeted/contexts/files/file_contexts");
              expect(await setfilesWouldRelabel(mnt, fc)).toEqual([]);
              // setfiles stays on one filesystem: ask about /boot's own tree too
              const r = await runTool("setfiles", ["-n", "-v", "-F", "-r", mnt, fc, join(mnt, "boot")]);
              expect(r.stdout.toString() + r.stderr).not.toMatch(/Would relabel/);
              expect(await labelOf(mnt, "/boot")).not.toBe("<<none>>");
              expect(await labelOf(mnt, "/etc/fstab")).toBe("system_u:object_r:etc_t:s0");
            } finally {
              execFileSync("umount", [join(mnt, "boot")]);
            }
          } finally {
            execFileSync("umount", [mnt]);
          }
        } finally {
          for (const l of loops) execFileSync("losetup", ["-d", l]);
        }
      },
    );

    it.skipIf(!isRoot)(
      "--selinux-relabel skips a mount imgpatch cannot edit (vfat ESP at /boot/efi)",
      async () => {
        const dir = await tempDir("sel");
        const io: CliIo = { out: () => {}, err: () => {}, env: {} };
        // run 1: give the GPT fixture (BIOS boot, vfat ESP, ext4 root) the RHEL-style policy
        const files = join(FIXTURE, "targeted/contexts/files");
        const withPolicy = join(dir, "policy.img");
        const ops = ["--mkdir", "/boot/efi", "--mkdir", "/etc/selinux/targeted/contexts/files"];
        ops.push("--write", "/etc/selinux/config:SELINUX=enforcing\nSELINUXTYPE=targeted\n");
        for (const f of ["file_contexts", "file_contexts.subs_dist", "file_contexts.local"])
          ops.push("--upload", `${join(files, f)}:/etc/selinux/targeted/contexts/files/${f}`);
        expect(await runCli(["customize", await fixture("disk-gpt.img"), "-o", withPolicy, ...ops], io)).toBe(
          0,
        );
        // run 2: the ESP mounted explicitly; the relabel skips it and labels the root
        let out = "";
        const io2: CliIo = { out: (t) => (out += t), err: (t) => (out += t), env: {} };
        const result = join(dir, "out.img");
        const args = [
          "customize",
          "-v",
          withPolicy,
          "-m",
          "3:/",
          "-m",
          "2:/boot/efi",
          "-o",
          result,
          "--selinux-relabel",
        ];
        expect(await runCli(args, io2), out).toBe(0);
        expect(out).toMatch(/skipped \(not editable\): \/boot\/efi/);
        const table = JSON.parse(execFileSync("sfdisk", ["-J", result]).toString()) as {
          partitiontable: { partitions: Array<{ start: number; size: number }> };
        };
        const p3 = table.partitiontable.partitions[2];
        const loop = execFileSync("losetup", [
          "-f",
          "--show",
          "-r",
          "-o",
          String(p3.start * 512),
          "--sizelimit",
          String(p3.size * 512),
          result,
        ])
          .toString()
          .trim();
        const mnt = await tempDir("sel-mnt");
        try {
          execFileSync("mount", ["-o", "ro", loop, mnt]);
          try {
            const fc = join(mnt, "etc/selinux/targeted/contexts/files/file_contexts");
            expect(await setfilesWouldRelabel(mnt, fc)).toEqual([]);
          } finally {
            execFileSync("umount", [mnt]);
          }
        } finally {
          execFileSync("losetup", ["-d", loop]);
        }
      },
    );

    it.skipIf(!isRoot || !existsSync(DEBIAN_FILES))("SELINUX=disabled: no labels written", async () => {
      const dir = await tempDir("sel");
      const root = join(dir, "root");
      guestTree(root, POLICIES[0]);
      writeFileSync(join(root, "etc/selinux/config"), "SELINUX=disabled\nSELINUXTYPE=default\n");
      const image = join(dir, "in.img");
      execFileSync("mke2fs", ["-q", "-t", "ext4", "-d", root, image, "64M"]);
      const result = join(dir, "out.img");
      const io: CliIo = { out: () => {}, err: () => {}, env: {} };
      expect(
        await runCli(["customize", image, "-o", result, "--write", "/etc/motd:hi", "--selinux-relabel"], io),
      ).toBe(0);
      await withMount(result, async (mnt) => {
        for (const p of ["/etc/motd", "/etc", "/"]) expect(await labelOf(mnt, p), p).toBe("<<none>>");
        expect(existsSync(join(mnt, ".autorelabel"))).toBe(false);
      });
    });

    it.skipIf(!isRoot)(
      "imgpatch customize --selinux-relabel: offline relabel, no marker; --selinux-autorelabel: the marker",
      async () => {
        const policy = POLICIES[1];
        const dir = await tempDir("sel");
        const root = join(dir, "root");
        guestTree(root, policy);
        const image = join(dir, "in.img");
        execFileSync("mke2fs", ["-q", "-t", "ext4", "-d", root, image, "64M"]);
        let out = "";
        const io: CliIo = { out: (t) => (out += t), err: (t) => (out += t), env: {} };
        const relabelled = join(dir, "relabelled.img");
        const code = await runCli(
          ["customize", "-v", image, "-o", relabelled, "--write", "/etc/motd:hi", "--selinux-relabel"],
          io,
        );
        expect(code, out).toBe(0);
        expect(out).toMatch(/SELinux relabel \(targeted\): \d+ paths, \d+ labels written/);
        await runToolOk("e2fsck", ["-fn", relabelled]);
        await withMount(relabelled, async (mnt) => {
          const fc = join(mnt, "etc/selinux/targeted/contexts/files/file_contexts");
          expect(await setfilesWouldRelabel(mnt, fc)).toEqual([]);
          expect(existsSync(join(mnt, ".autorelabel"))).toBe(false);
        });
        // ls -Z / stat / --json show the stored labels
        out = "";
        expect(await runCli(["ls", "-Z", relabelled, "/etc"], io), out).toBe(0);
        expect(out).toContain("system_u:object_r:etc_t:s0 motd");
        out = "";
        expect(await runCli(["stat", "--json", relabelled, "/var/run"], io), out).toBe(0);
        expect(JSON.parse(out)).toMatchObject({ type: "symlink", selinux: "system_u:object_r:var_run_t:s0" });
        out = "";
        expect(await runCli(["stat", relabelled, "/usr/bin"], io), out).toBe(0);
        expect(out).toContain("selinux: system_u:object_r:bin_t:s0");
        out = "";
        expect(await runCli(["ls", "--json", relabelled, "/"], io), out).toBe(0);
        expect(JSON.parse(out)).toContainEqual(
          expect.objectContaining({ path: "/etc", selinux: "system_u:object_r:etc_t:s0" }),
        );
        const marked = join(dir, "marked.img");
        expect(await runCli(["customize", image, "-o", marked, "--selinux-autorelabel"], io), out).toBe(0);
        await withMount(marked, async (mnt) => {
          expect(existsSync(join(mnt, ".autorelabel"))).toBe(true);
          // the marker itself is written through the labeller too
          expect(await labelOf(mnt, "/.autorelabel")).toBe("system_u:object_r:etc_runtime_t:s0");
        });
      },
    );
  },
);
