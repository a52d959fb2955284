/**
 * The sysprep operations that remove, empty or edit guest paths: libguestfs 1.48's
 * sysprep/sysprep_operation_*.ml, path for path (their documentation lists the paths; the
 * operations' guards on the distribution and package manager are kept).
 */
import { MAX_FIND } from "./guest-ops.js";
import { DEBIAN_FAMILY, RED_HAT_FAMILY } from "./inspect.js";
import type { SysprepContext } from "./types.js";
import { SysprepGuestError } from "./user-account.js";

type Perform = (ctx: SysprepContext) => Promise<void>;

const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/** backup-files: editor backups, only below these directories on Linux. */
export const BACKUP_FILE_DIRS = ["/etc", "/root", "/srv", "/tmp", "/var"];
const BACKUP_FILE_RE = [/\.bak$/s, /~$/s];

async function backupFiles(ctx: SysprepContext): Promise<void> {
  const { sfs } = ctx;
  for (const top of BACKUP_FILE_DIRS) {
    if (!(await sfs.isDir(top))) continue;
    // visit: every entry below TOP (symlinked directories are not entered); regular files only
    const stack = [top];
    const hits: string[] = [];
    let seen = 0;
    while (stack.length > 0) {
      const d = stack.pop() as string;
      for (const name of await sfs.fs.readdir(d)) {
        if (++seen > MAX_FIND)
          throw new SysprepGuestError(`backup-files: more than ${MAX_FIND} entries under ${top}`, top);
        const p = `${d}/${name}`;
        const st = await sfs.fs.lstat(p);
        if (st.type === "directory") stack.push(p);
        else if (st.type === "file" && BACKUP_FILE_RE.some((re) => re.test(name))) hits.push(p);
      }
    }
    for (const p of hits.sort()) await sfs.rm(p);
  }
}

/** logfiles: libguestfs 1.48's list, in its (sorted) order. */
export const LOGFILE_GLOBS = [
  "/var/log/*.log*",
  "/var/log/audit/*",
  "/var/log/btmp*",
  "/var/log/cron*",
  "/var/log/dmesg*",
  "/var/log/lastlog*",
  "/var/log/maillog*",
  "/var/log/mail/*",
  "/var/log/messages*",
  "/var/log/secure*",
  "/var/log/spooler*",
  "/var/log/tallylog*",
  "/var/log/wtmp*",
  "/var/log/apache2/*_log",
  "/var/log/apache2/*_log-*",
  "/var/log/ntp",
  "/var/log/tuned/tuned.log",
  "/var/log/debug*",
  "/var/log/syslog*",
  "/var/log/faillog*",
  "/var/log/firewalld*",
  "/var/log/grubby*",
  "/var/log/xferlog*",
  "/var/log/BackupPC/LOG",
  "/var/log/ceph/*.log",
  "/var/log/chrony/*.log",
  "/var/log/cups/*_log*",
  "/var/log/glusterfs/*glusterd.vol.log",
  "/var/log/glusterfs/glusterfs.log",
  "/var/log/httpd/*log",
  "/var/log/jetty/jetty-console.log",
  "/var/log/libvirt/libxl/*.log",
  "/var/log/libvirt/libvirtd.log",
  "/var/log/libvirt/lxc/*.log",
  "/var/log/libvirt/qemu/*.log",
  "/var/log/libvirt/uml/*.log",
  "/var/named/data/named.run",
  "/var/log/ppp/connect-errors",
  "/var/log/setroubleshoot/*.log",
  "/var/log/squid/*.log",
  "/var/lib/logrotate.status",
  "/root/install.log",
  "/root/install.log.syslog",
  "/root/anaconda-ks.cfg",
  "/root/anaconda-post.log",
  "/root/initial-setup-ks.cfg",
  "/root/original-ks.cfg",
  "/var/log/anaconda.syslog",
  "/var/log/anaconda/*",
  "/var/log/installer/*",
  "/var/cache/gdm/*",
  "/var/lib/AccountService/users/*",
  "/var/lib/fprint/*",
  "/var/cache/fontconfig/*",
  "/var/cache/man/*",
  "/var/log/sa/*",
  "/var/log/gdm/*",
  "/var/log/lightdm/*",
  "/var/log/ntpstats/*",
  "/etc/Pegasus/*.cnf",
  "/etc/Pegasus/*.crt",
  "/etc/Pegasus/*.csr",
  "/etc/Pegasus/*.pem",
  "/etc/Pegasus/*.srl",
  "/var/log/rhsm/*",
  "/var/log/journal/*",
  "/var/log/aptitude*",
  "/var/log/apt/*",
  "/var/log/exim4/*",
  "/var/log/ConsoleKit/*",
].sort();

const IFCFG = "/etc/sysconfig/network-scripts/ifcfg-*";

async function cronSpool(ctx: SysprepContext): Promise<void> {
  const { sfs } = ctx;
  const isSeq = (p: string) => base(p) === ".SEQ";
  // Reset in place ("00000\n"), keeping the file's attributes and label.
  const reset = async (f: string) => {
    if (await sfs.isFile(f)) await sfs.write(f, "00000\n");
  };
  await sfs.rmRfOnlyFiles("/var/spool/cron/", isSeq);
  await reset("/var/spool/cron/atjobs/.SEQ");
  await sfs.rmGlobs(["/var/spool/atjobs/*"]);
  await reset("/var/spool/atjobs/.SEQ");
  await sfs.rmGlobs(["/var/spool/atspool/*"]);
  await sfs.rmRfOnlyFiles("/var/spool/at/", isSeq);
  await reset("/var/spool/at/.SEQ");
}

async function pacctLog(ctx: SysprepContext): Promise<void> {
  const { sfs, inspection } = ctx;
  let dir: string | undefined;
  if (RED_HAT_FAMILY.has(inspection.distro)) dir = "/var/account";
  else if (DEBIAN_FAMILY.has(inspection.distro)) dir = "/var/log/account";
  if (!dir) return;
  await sfs.rmGlobs([`${dir}/pacct*`]);
  await sfs.touch(`${dir}/pacct`);
}

async function packageManagerCache(ctx: SysprepContext): Promise<void> {
  const { sfs, inspection } = ctx;
  let dirs: string[] = [];
  switch (inspection.packageManagement) {
    case "apt":
      dirs = ["/var/cache/apt/archives/"];
      break;
    case "dnf":
      dirs = ["/var/cache/dnf/"];
      break;
    case "yum":
      dirs = ["/var/cache/yum/"];
      break;
    case "zypper":
      dirs = await sfs.glob("/var/cache/zypp*");
      break;
  }
  for (const d of dirs) await sfs.rmRfOnlyFiles(d);
}

async function tmpFiles(ctx: SysprepContext): Promise<void> {
  const { sfs } = ctx;
  for (const dir of ["/tmp", "/var/tmp"]) {
    await sfs.rmRfGlobs([`${dir}/*`]);
    // then every remaining entry, dot-files included (g#ls)
    const st = await sfs.fs.stat(dir).catch(() => null);
    if (st?.type !== "directory") continue;
    for (const name of await sfs.fs.readdir(dir)) await sfs.rmRf(`${dir}/${name}`);
  }
}

async function caCertificates(ctx: SysprepContext): Promise<void> {
  const { sfs } = ctx;
  const globs = [
    "/etc/pki/CA/certs/*.crt",
    "/etc/pki/CA/crl/*.crt",
    "/etc/pki/CA/newcerts/*.crt",
    "/etc/pki/CA/private/*.key",
    "/etc/pki/tls/private/*.key",
    "/etc/pki/tls/certs/*.crt",
  ];
  const keep = new Set(["/etc/pki/tls/certs/ca-bundle.crt", "/etc/pki/tls/certs/ca-bundle.trust.crt"]);
  const paths = new Set<string>();
  for (const g of globs) for (const p of await sfs.glob(g)) if (!keep.has(p)) paths.add(p);
  for (const p of [...paths].sort()) if (await sfs.rm(p)) ctx.updateCaStore = true;
}

async function ipaClient(ctx: SysprepContext): Promise<void> {
  const { sfs } = ctx;
  await sfs.rmGlobs([
    "/etc/ipa/ca.crt",
    "/etc/ipa/default.conf",
    "/var/lib/ipa-client/sysrestore/*",
    "/var/lib/ipa-client/pki/*",
  ]);
  for (const f of [
    "/etc/pki/ca-trust/source/anchors/ipa-ca.crt",
    "/usr/local/share/ca-certificates/ipa-ca.crt",
    "/etc/pki/ca-trust/source/ipa.p11-kit",
  ])
    if (await sfs.rm(f)) ctx.updateCaStore = true;
}

async function kerberosData(ctx: SysprepContext): Promise<void> {
  const keep = new Set(["/var/kerberos/krb5kdc/kadm5.acl", "/var/kerberos/krb5kdc/kdc.conf"]);
  for (const p of await ctx.sfs.glob("/var/kerberos/krb5kdc/*")) if (!keep.has(p)) await ctx.sfs.rm(p);
}

async function machineId(ctx: SysprepContext): Promise<void> {
  for (const p of ["/etc/machine-id", "/var/lib/dbus/machine-id"])
    if (await ctx.sfs.isFile(p)) await ctx.sfs.truncate(p);
}

/** The simple operations: name → what it does. */
export const FILE_OPERATIONS: Record<string, Perform> = {
  "abrt-data": (c) => c.sfs.rmRfGlobs(["/var/spool/abrt/*"]),
  "backup-files": backupFiles,
  "bash-history": async (c) => {
    await c.sfs.rmGlobs(["/home/*/.bash_history"]);
    await c.sfs.rm("/root/.bash_history");
  },
  "blkid-tab": async (c) => {
    for (const f of [
      "/var/run/blkid.tab",
      "/var/run/blkid.tab.old",
      "/etc/blkid/blkid.tab",
      "/etc/blkid/blkid.tab.old",
      "/etc/blkid.tab",
      "/etc/blkid.tab.old",
      "/dev/.blkid.tab",
      "/dev/.blkid.tab.old",
    ])
      if ((await c.sfs.lstat(f))?.type !== "symlink") await c.sfs.rm(f);
  },
  "ca-certificates": caCertificates,
  "crash-data": (c) => c.sfs.rmRfGlobs(["/var/crash/*", "/var/log/dump/*"]),
  "cron-spool": cronSpool,
  "dhcp-client-state": (c) => c.sfs.rmRfGlobs(["/var/lib/dhclient/*", "/var/lib/dhcp/*"]),
  "dhcp-server-state": (c) => c.sfs.rmRfGlobs(["/var/lib/dhcpd/*"]),
  "dovecot-data": (c) => c.sfs.rmGlobs(["/var/lib/dovecot/*"]),
  "firewall-rules": (c) =>
    c.sfs.rmGlobs(["/etc/sysconfig/iptables", "/etc/firewalld/services/*", "/etc/firewalld/zones/*"]),
  "flag-reconfiguration": async (c) => {
    await c.sfs.touch("/.unconfigured");
  },
  "ipa-client": ipaClient,
  "kerberos-data": kerberosData,
  "kerberos-hostkeytab": async (c) => {
    await c.sfs.rm("/etc/krb5.keytab");
  },
  logfiles: (c) => c.sfs.rmRfGlobs(LOGFILE_GLOBS),
  "machine-id": machineId,
  "mail-spool": (c) => c.sfs.rmRfGlobs(["/var/spool/mail/*", "/var/mail/*"]),
  "net-hostname": async (c) => {
    if (!RED_HAT_FAMILY.has(c.inspection.distro)) return;
    for (const f of await c.sfs.glob(IFCFG))
      if (await c.sfs.isFile(f))
        await c.sfs.filterLines(f, (l) => !l.startsWith("HOSTNAME=") && !l.startsWith("DHCP_HOSTNAME="));
  },
  "net-hwaddr": async (c) => {
    if (!RED_HAT_FAMILY.has(c.inspection.distro)) return;
    for (const f of await c.sfs.glob(IFCFG))
      if (await c.sfs.isFile(f)) await c.sfs.filterLines(f, (l) => !l.startsWith("HWADDR="));
  },
  "net-nmconn": async (c) => {
    if (!RED_HAT_FAMILY.has(c.inspection.distro)) return;
    await c.sfs.rmGlobs(["/etc/NetworkManager/system-connections/*.nmconnection"]);
  },
  "pacct-log": pacctLog,
  "package-manager-cache": packageManagerCache,
  "pam-data": (c) => c.sfs.rmGlobs(["/var/run/console/*", "/var/run/faillock/*", "/var/run/sepermit/*"]),
  "passwd-backups": async (c) => {
    for (const f of [
      "/etc/group-",
      "/etc/gshadow-",
      "/etc/passwd-",
      "/etc/shadow-",
      "/etc/subgid-",
      "/etc/subuid-",
    ])
      await c.sfs.rm(f);
  },
  "puppet-data-log": (c) =>
    c.sfs.rmGlobs(["/var/log/puppet/*", "/var/lib/puppet/*/*", "/var/lib/puppet/*/*/*"]),
  "rh-subscription-manager": async (c) => {
    if (c.inspection.distro !== "rhel") return;
    await c.sfs.rmRfGlobs(["/etc/pki/consumer/*", "/etc/pki/entitlement/*"]);
  },
  "rhn-systemid": async (c) => {
    if (c.inspection.distro !== "rhel") return;
    await c.sfs.rm("/etc/sysconfig/rhn/systemid");
    await c.sfs.rm("/etc/sysconfig/rhn/osad-auth.conf");
  },
  "rpm-db": async (c) => {
    if (c.inspection.packageFormat === "rpm") await c.sfs.rmGlobs(["/var/lib/rpm/__db.*"]);
  },
  "samba-db-log": (c) =>
    c.sfs.rmGlobs(["/var/log/samba/old/*", "/var/log/samba/*", "/var/lib/samba/*/*", "/var/lib/samba/*"]),
  "smolt-uuid": async (c) => {
    for (const f of ["/etc/sysconfig/hw-uuid", "/etc/smolt/uuid", "/etc/smolt/hw-uuid"]) await c.sfs.rm(f);
  },
  "ssh-hostkeys": (c) => c.sfs.rmGlobs(["/etc/ssh/*_host_*"]),
  "ssh-userdir": async (c) => {
    await c.sfs.rmRfGlobs(["/home/*/.ssh"]);
    await c.sfs.rmRf("/root/.ssh");
  },
  "sssd-db-log": (c) => c.sfs.rmGlobs(["/var/log/sssd/*", "/var/lib/sss/db/*"]),
  "tmp-files": tmpFiles,
  "udev-persistent-net": async (c) => {
    await c.sfs.rm("/etc/udev/rules.d/70-persistent-net.rules");
  },
  utmp: async (c) => {
    await c.sfs.rm("/var/run/utmp");
  },
  "yum-uuid": async (c) => {
    if (c.inspection.packageManagement === "yum") await c.sfs.rm("/var/lib/yum/uuid");
  },
};
