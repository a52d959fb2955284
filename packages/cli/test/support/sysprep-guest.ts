/**
 * A realistic guest tree for sysprep tests and the benchmark: what a used cloud VM leaves behind
 * (machine-id, ssh host keys, logs, histories, leases, package caches, rpm locks, cloud-init
 * state, udev rules, NetworkManager profiles, crash/abrt data, mail and cron spools, tmp files,
 * users...) plus files no operation may touch. Built in a host directory, then made into an ext4
 * (mke2fs -d) or XFS (mkfs.xfs -p) bare filesystem image.
 */
import { execFileSync } from "node:child_process";
import {
  chownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";

export type GuestFlavour = "rhel7" | "debian12";

const HEX32 = "4f0e7d5c2b1a49e8a7c6d5e4f3a2b1c0";

export function buildSysprepTree(root: string, flavour: GuestFlavour): void {
  const files: Record<string, string | Buffer> = {};
  const f = (p: string, c: string | Buffer = `${p}\n`) => {
    files[p] = c;
  };
  const rh = flavour === "rhel7";
  f(
    "etc/os-release",
    rh
      ? 'NAME="Red Hat Enterprise Linux Server"\nID="rhel"\nID_LIKE="fedora"\nVERSION_ID="7.9"\nPRETTY_NAME="Red Hat Enterprise Linux Server 7.9 (Maipo)"\n'
      : 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
  );
  if (rh) f("etc/redhat-release", "Red Hat Enterprise Linux Server release 7.9 (Maipo)\n");
  else f("etc/debian_version", "12.8\n");
  f("etc/hostname", "golden-1.example.com\n");
  f("etc/machine-id", `${HEX32}\n`);
  f("var/lib/dbus/machine-id", `${HEX32}\n`);
  f("var/lib/systemd/random-seed", Buffer.alloc(512, 7));
  f(
    "etc/passwd",
    "root:x:0:0:root:/root:/bin/bash\ndaemon:x:2:2:daemon:/sbin:/sbin/nologin\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/bash\n",
  );
  f(
    "etc/shadow",
    "root:!!:19000::::::\ndaemon:*:19000::::::\nalice:$6$x$y:19000:0:99999:7:::\nbob:!!:19000:0:99999:7:::\n",
  );
  f("etc/group", "root:x:0:\ndaemon:x:2:\nwheel:x:10:alice\nalice:x:1000:\nbob:x:1001:\n");
  f("etc/gshadow", "root:::\nalice:!::\nbob:!::\n");
  f(
    "etc/login.defs",
    "MAIL_DIR\t/var/spool/mail\nUID_MIN                  1000\nUID_MAX                 60000\nGID_MIN 1000\n",
  );
  for (const b of ["passwd-", "shadow-", "group-", "gshadow-", "subuid-"]) f(`etc/${b}`);
  f("etc/ssh/sshd_config", "PermitRootLogin no\n");
  for (const k of ["rsa", "ecdsa", "ed25519"]) {
    f(`etc/ssh/ssh_host_${k}_key`, `-----BEGIN OPENSSH PRIVATE KEY----- ${k}\n`);
    f(`etc/ssh/ssh_host_${k}_key.pub`, `ssh-${k} AAAA host\n`);
  }
  f("root/.bash_history", "ls\nreboot\n");
  f("root/.ssh/authorized_keys", "ssh-ed25519 AAAA root@admin\n");
  f("root/anaconda-ks.cfg");
  f("root/original-ks.cfg");
  f("root/install.log");
  f("root/keep.txt");
  f("home/alice/.bash_history", "sudo su\n");
  f("home/alice/.ssh/authorized_keys", "ssh-ed25519 AAAA alice@laptop\n");
  f("home/alice/.bashrc");
  f("home/alice/notes.bak");
  f("home/bob/.bash_history");
  f("home/bob/.profile");
  // logs
  for (const l of [
    "messages",
    "messages-20261101",
    "secure",
    "cron",
    "maillog",
    "boot.log",
    "yum.log",
    "dnf.log.1",
    "wtmp",
    "btmp",
    "lastlog",
    "tallylog",
    "dmesg.old",
    "audit/audit.log",
    "audit/audit.log.1",
    "journal/0123456789abcdef/system.journal",
    "anaconda/anaconda.log",
    "tuned/tuned.log",
    "httpd/access_log",
    "httpd/error_log",
    "sa/sa07",
    "rhsm/rhsm.log",
    "apt/history.log",
    "installer/syslog",
    "sssd/sssd.log",
    "puppet/puppet.log",
    "samba/log.smbd",
    "samba/old/log.nmbd.1",
    "chrony/measurements.log",
    "keepme.txt",
    "README",
  ])
    f(`var/log/${l}`);
  f("var/lib/logrotate.status");
  f("var/cache/man/index.db");
  f("var/cache/fontconfig/deadbeef-le64.cache-7");
  f("var/lib/fprint/alice");
  // network identity
  f(
    "etc/sysconfig/network-scripts/ifcfg-eth0",
    'DEVICE=eth0\nHWADDR=52:54:00:12:34:56\nBOOTPROTO=dhcp\nHOSTNAME=golden-1\nDHCP_HOSTNAME="golden-1"\nONBOOT=yes\n',
  );
  f("etc/sysconfig/network-scripts/ifcfg-lo", "DEVICE=lo\nONBOOT=yes\n");
  f("etc/NetworkManager/system-connections/eth0.nmconnection", "[connection]\nid=eth0\n");
  f("etc/NetworkManager/NetworkManager.conf", "[main]\n");
  f(
    "etc/udev/rules.d/70-persistent-net.rules",
    'SUBSYSTEM=="net", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"\n',
  );
  f("etc/udev/rules.d/99-keep.rules");
  f("var/lib/dhclient/dhclient-eth0.leases", "lease { }\n");
  f("var/lib/dhcp/dhclient.eth0.leases", "lease { }\n");
  f("var/lib/dhcpd/dhcpd.leases");
  f("etc/blkid/blkid.tab");
  // package managers
  f("var/cache/yum/x86_64/7/base/packages/bash-4.2.rpm", Buffer.alloc(4096, 1));
  f("var/cache/yum/x86_64/7/base/repomd.xml");
  f("var/cache/dnf/baseos-1234/repodata/repomd.xml");
  f("var/cache/apt/archives/bash_5.2_amd64.deb", Buffer.alloc(4096, 2));
  f("var/cache/apt/archives/lock", "");
  f("var/cache/apt/pkgcache.bin");
  f("var/lib/yum/uuid", "3b2f-uuid\n");
  f("var/lib/rpm/Packages", Buffer.alloc(8192, 3));
  f("var/lib/rpm/__db.001", Buffer.alloc(1024));
  f("var/lib/rpm/__db.002", Buffer.alloc(1024));
  f("var/lib/rpm/.rpm.lock", "");
  // cloud-init state (no virt-sysprep operation removes it: both must keep it)
  f("var/lib/cloud/instance/obj.pkl", Buffer.alloc(256, 4));
  f("var/lib/cloud/instances/i-0123/datasource", "DataSourceNoCloud\n");
  // crash data, spools
  f("var/crash/127.0.0.1-2026-11-01/vmcore", Buffer.alloc(2048, 5));
  f("var/log/dump/dump.1");
  f("var/spool/abrt/ccpp-2026-11-01-1/coredump", Buffer.alloc(1024, 6));
  f("var/spool/mail/alice", "From root\n");
  f("var/spool/mail/bob", "From root\n");
  f("var/spool/cron/alice", "0 * * * * true\n");
  f("var/spool/cron/root", "@reboot true\n");
  f("var/spool/at/.SEQ", "0002a\n");
  f("var/spool/at/a0001201b1c2d3", "#!/bin/sh\n");
  f("var/spool/at/spool/a0001201b1c2d3");
  f("var/lib/dovecot/instances");
  f("var/lib/sss/db/cache_default.ldb");
  f("var/lib/samba/private/secrets.tdb");
  f("var/lib/samba/registry.tdb");
  f("var/lib/puppet/ssl/certs/host.pem");
  f("var/lib/puppet/state/last_run.yaml");
  f("var/account/pacct", "x");
  f("var/account/pacct-20261101", "x");
  f("var/log/account/pacct", "x");
  f("var/log/account/pacct.1.gz", "x");
  // identity / enrolment
  f("etc/krb5.keytab", Buffer.alloc(64, 8));
  f("etc/krb5.conf");
  f("var/kerberos/krb5kdc/principal");
  f("var/kerberos/krb5kdc/kdc.conf");
  f("var/kerberos/krb5kdc/kadm5.acl");
  f("etc/ipa/default.conf");
  f("etc/ipa/ca.crt");
  f("var/lib/ipa-client/sysrestore/sysrestore.state");
  f("etc/sysconfig/rhn/systemid");
  f("etc/sysconfig/rhn/up2date");
  f("etc/pki/consumer/cert.pem");
  f("etc/pki/entitlement/1234.pem");
  f("etc/smolt/uuid");
  f("etc/sysconfig/hw-uuid");
  // firewall, certificates (off by default)
  f("etc/sysconfig/iptables", "*filter\nCOMMIT\n");
  f("etc/firewalld/zones/public.xml");
  f("etc/firewalld/services/app.xml");
  f("etc/firewalld/firewalld.conf");
  f("etc/pki/tls/certs/ca-bundle.crt");
  f("etc/pki/tls/certs/ca-bundle.trust.crt");
  f("etc/pki/tls/certs/localhost.crt");
  f("etc/pki/tls/private/localhost.key");
  // backups and temporary files
  f("etc/fstab.bak");
  f("etc/hosts~");
  f("srv/www/index.html~");
  f("var/lib/misc/state.bak");
  f("usr/share/doc/example.bak");
  f("tmp/build.log");
  f("tmp/.X0-lock");
  f("tmp/session/data");
  f("var/tmp/systemd-private-abc/tmp/x");
  f("var/tmp/.hidden");
  // /run contents that an old distro left on disk
  f("run/utmp", Buffer.alloc(384));
  f("run/console/alice");
  f("run/faillock/alice");
  // a system that runs
  f("usr/bin/true", "#!/bin/sh\n");
  f("usr/share/zoneinfo/UTC", "TZif\n");
  f("etc/fstab", "# filled in by the image builder\n");

  for (const [p, c] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), c);
  }
  for (const d of ["proc", "sys", "dev", "mnt", "boot", "var/spool/atjobs", "var/lib/dhcpd/empty"])
    mkdirSync(join(root, d), { recursive: true });
  symlinkSync("../run", join(root, "var/run"));
  symlinkSync("usr/bin", join(root, "bin"));
  symlinkSync("usr/bin", join(root, "sbin"));
  // owners as the guest has them (root only: a rootless run keeps its own ids)
  if (process.getuid?.() === 0)
    for (const [p, id] of [
      ["home/alice", 1000],
      ["home/alice/.bash_history", 1000],
      ["home/alice/.ssh", 1000],
      ["home/alice/.ssh/authorized_keys", 1000],
      ["home/alice/.bashrc", 1000],
      ["home/alice/notes.bak", 1000],
      ["home/bob", 1001],
      ["home/bob/.bash_history", 1001],
      ["home/bob/.profile", 1001],
    ] as const)
      chownSync(join(root, p), id, id);
  execFileSync("chmod", ["0700", join(root, "root"), join(root, "home/alice/.ssh")]);
  execFileSync("chmod", [
    "0600",
    join(root, "etc/shadow"),
    join(root, "etc/gshadow"),
    join(root, "etc/ssh/ssh_host_rsa_key"),
  ]);
}

/** A bare ext4 image of `dir` with a fixed UUID (its fstab names it). */
export function makeExt4(
  dir: string,
  image: string,
  uuid: string,
  extra: readonly string[] = [],
  size = "96M",
): void {
  writeFileSync(join(dir, "etc/fstab"), `UUID=${uuid} / ext4 defaults 1 1\n`);
  execFileSync(
    "mke2fs",
    ["-q", "-F", "-t", "ext4", "-U", uuid, "-L", "root", ...extra, "-d", dir, image, size],
    {
      env: { ...process.env, E2FSPROGS_FAKE_TIME: "1700000000" },
    },
  );
}

/** mkfs.xfs's protofile for a host tree (modes, owners, symlinks kept; names without spaces). */
export function protofileOf(dir: string): string {
  const out = ["/dev/null", "0 0"];
  const mode = (type: string, m: number) =>
    `${type}${m & 0o4000 ? "u" : "-"}${m & 0o2000 ? "g" : "-"}${(m & 0o777).toString(8).padStart(3, "0")}`;
  const walk = (p: string, indent: string) => {
    for (const n of readdirSync(p).sort()) {
      const c = join(p, n);
      const st = lstatSync(c);
      const head = `${indent}${n}`;
      if (st.isSymbolicLink())
        out.push(`${head} ${mode("l", st.mode)} ${st.uid} ${st.gid} ${readlinkSync(c)}`);
      else if (st.isDirectory()) {
        out.push(`${head} ${mode("d", st.mode)} ${st.uid} ${st.gid}`);
        walk(c, `${indent} `);
        out.push(`${indent}$`);
      } else out.push(`${head} ${mode("-", st.mode)} ${st.uid} ${st.gid} ${c}`);
    }
  };
  const st = lstatSync(dir);
  out.push(`${mode("d", st.mode)} ${st.uid} ${st.gid}`);
  walk(dir, " ");
  out.push("$", "");
  return out.join("\n");
}

/** A bare XFS image of `dir` (mkfs.xfs -p) with a fixed UUID. */
export function makeXfs(dir: string, image: string, uuid: string, args: readonly string[] = []): void {
  writeFileSync(join(dir, "etc/fstab"), `UUID=${uuid} / xfs defaults 0 0\n`);
  const proto = `${image}.proto`;
  writeFileSync(proto, protofileOf(dir));
  writeFileSync(image, "");
  execFileSync("truncate", ["-s", "320M", image]);
  execFileSync("mkfs.xfs", ["-q", "-f", "-m", `uuid=${uuid}`, ...args, "-p", proto, image]);
  rmSync(proto);
}
