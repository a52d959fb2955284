/**
 * homedir_template expansion against libsemanage itself: `semodule -p ROOT -B -n` over a copy of
 * this host's policy store (Debian's selinux-policy-default), with a passwd of our own bind-mounted
 * over /etc/passwd in a private mount namespace (`unshare -m`; the host's files are never touched).
 * The file_contexts.homedirs it writes must equal our expansion byte for byte, and matchpathcon
 * with it must agree with the labels of a guest policy loaded from a tree whose shipped homedirs
 * file is stale (the host's, generated without these users).
 */
import { execFile } from "node:child_process";
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describeAsRoot, oraclesRequired } from "@imgpatch/testkit";
import { afterAll, expect, it } from "vitest";
import { expandHomedirTemplate, loadGuestPolicy, parseFileContexts, S_IFREG } from "../src/index.js";
import { hostReader, MODES, matchpathcon, samplesFor } from "./oracle-helpers.js";

const execFileAsync = promisify(execFile);
const STORE = "/var/lib/selinux/default";
const POLICY = "/etc/selinux/default";
const tmp = mkdtempSync(join(tmpdir(), "imgpatch-homedirs-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Users covering each rule: home roots from passwd, policy conflicts, uid range, shells, depth. */
const PASSWD = [
  "root:x:0:0:root:/root:/bin/bash",
  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
  "alice:x:1001:1001::/home/alice:/bin/bash",
  "bob:x:1002:1002::/srv/users/bob/:/bin/sh",
  "carol:x:1003:1003::/data/homes/carol:/bin/bash",
  "dave:x:1004:1004::/opt/dave:/bin/bash",
  "svc:x:1005:1005::/var/lib/svc:/bin/bash",
  "sddm:x:998:998::/var/lib/sddm:/bin/false",
  "low:x:400:400::/low/home/low:/bin/bash",
  "high:x:70000:70000::/high/home/high:/bin/bash",
  "shallow:x:1006:1006::/shallow:/bin/bash",
  "noshell:x:1007:1007::/nosh/home/x:/usr/sbin/nologin",
  "",
].join("\n");

const opt = (p: string) => (existsSync(p) ? readFileSync(p, "latin1") : undefined);

describeAsRoot(
  ["semodule", "matchpathcon", "unshare", "mount"],
  "homedir_template expansion vs semodule -B",
  () => {
    const haveStore = existsSync(`${STORE}/active/homedir_template`);
    if (!haveStore && oraclesRequired())
      it("has selinux-policy-default's store", () => {
        throw new Error(`${STORE}/active/homedir_template missing (IMGPATCH_ORACLES=required)`);
      });

    it.skipIf(!haveStore)(
      "equals genhomedircon's file line for line; labels agree with matchpathcon",
      async () => {
        // the tool's root: a copy of the store and the policy directory
        const root = join(tmp, "root");
        mkdirSync(join(root, "var/lib/selinux"), { recursive: true });
        mkdirSync(join(root, "etc/selinux"), { recursive: true });
        cpSync(STORE, join(root, "var/lib/selinux/default"), { recursive: true });
        cpSync(POLICY, join(root, "etc/selinux/default"), { recursive: true });
        cpSync("/etc/selinux/semanage.conf", join(root, "etc/selinux/semanage.conf"));
        const active = join(root, "var/lib/selinux/default/active");
        // a login mapped to its own SELinux user, as `semanage login -a` records it
        writeFileSync(join(active, "seusers.local"), "alice:staff_u:s0\n");
        appendFileSync(join(active, "seusers"), "alice:staff_u:s0\n");
        const passwd = join(tmp, "passwd");
        writeFileSync(passwd, PASSWD);
        const fc = join(root, "etc/selinux/default/contexts/files/file_contexts");
        const inputs = {
          template: readFileSync(join(active, "homedir_template"), "latin1"),
          seusers: readFileSync(join(active, "seusers"), "latin1"),
          usersExtra: opt(join(active, "users_extra")),
          passwd: PASSWD,
          loginDefs: opt("/etc/login.defs"),
          useradd: opt("/etc/default/useradd"),
          libuserConf: opt("/etc/libuser.conf"),
          shells: opt("/etc/shells"),
          exportHomeIsDir: existsSync("/export/home") && statSync("/export/home").isDirectory(),
          policySpecs: parseFileContexts(readFileSync(fc), fc),
        };
        const ours = expandHomedirTemplate(inputs);

        // asynchronously: the rebuild takes tens of seconds on a busy host (vitest's RPC times
        // out after 60 s of a blocked worker)
        await execFileAsync("unshare", [
          "-m",
          "sh",
          "-c",
          'mount --bind "$1" /etc/passwd && semodule -p "$2" -B -n',
          "sh",
          passwd,
          root,
        ]);
        const theirs = readFileSync(`${fc}.homedirs`, "latin1");
        expect(theirs).toContain("# Home Context for user alice");
        expect(ours.split("\n")).toEqual(theirs.split("\n"));

        // a guest tree whose shipped homedirs is stale (the host's: no /srv/users, /data/homes, alice)
        const guest = join(tmp, "guest");
        const files = join(guest, "etc/selinux/default/contexts/files");
        mkdirSync(files, { recursive: true });
        writeFileSync(join(guest, "etc/selinux/config"), "SELINUX=enforcing\nSELINUXTYPE=default\n");
        for (const f of ["file_contexts", "file_contexts.homedirs", "file_contexts.subs_dist"])
          cpSync(join(POLICY, "contexts/files", f), join(files, f));
        const gActive = join(guest, "var/lib/selinux/default/active");
        mkdirSync(gActive, { recursive: true });
        for (const f of ["homedir_template", "seusers", "users_extra"])
          cpSync(join(active, f), join(gActive, f));
        for (const f of ["login.defs", "default/useradd", "shells"])
          if (existsSync(`/etc/${f}`)) cpSync(`/etc/${f}`, join(guest, "etc", f));
        writeFileSync(join(guest, "etc/passwd"), PASSWD);
        const policy = await loadGuestPolicy(hostReader(guest));
        expect(policy?.homedirsExpanded).toBe(true);
        const ssh = "/srv/users/bob/.ssh/authorized_keys";
        expect(policy?.contexts.lookup(ssh, S_IFREG)).toBe("unconfined_u:object_r:ssh_home_t:s0");
        const shipped = await loadGuestPolicy(hostReader(guest), { homedirs: "shipped" });
        expect(shipped?.contexts.lookup(ssh, S_IFREG)).not.toBe("unconfined_u:object_r:ssh_home_t:s0");

        const paths = new Set<string>([
          ssh,
          "/home/alice/.ssh/id_ed25519",
          "/home/alice/public_html/x",
          "/data/homes/carol/.bashrc",
          "/data/homes/carol",
          "/srv/users",
          "/opt/dave/.ssh/authorized_keys",
          "/var/lib/svc/.ssh",
          "/run/user/1001/bus",
          "/tmp/gconfd-alice",
          "/root/.ssh/authorized_keys",
        ]);
        for (const s of parseFileContexts(ours, "homedirs")) for (const p of samplesFor(s)) paths.add(p);
        const list = [...paths].filter((p) => !p.includes("\n"));
        let compared = 0;
        const mismatches: string[] = [];
        for (const [mode, flag] of MODES) {
          const expected = await matchpathcon(fc, flag, list);
          for (const [i, p] of list.entries()) {
            const mine = policy?.contexts.lookup(p, mode) ?? "<<none>>";
            compared++;
            if (mine !== expected[i])
              mismatches.push(`${flag} ${p}: ours ${mine}, matchpathcon ${expected[i]}`);
          }
        }
        expect(mismatches.slice(0, 20), `${mismatches.length} of ${compared} differ`).toEqual([]);
        expect(compared).toBeGreaterThan(1000);
      },
      240_000,
    );
  },
);
