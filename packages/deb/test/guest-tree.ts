/** A small Debian-like starting tree and a demo package touching every unpack rule, shared by the oracles. */
import { cp, lutimes, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { DebSpec } from "./build-deb.js";

export const INSTALLED = `Package: trigger-watcher
Status: install ok installed
Priority: optional
Section: misc
Installed-Size: 1
Maintainer: imgpatch tests <tests@example.invalid>
Architecture: all
Version: 1.0
Description: watches /usr/share/demo-doc
 test stanza

`;

/**
 * The start tree's symlinks get a fixed time: copying a tree (fs.cp's preserveTimestamps follows
 * symlinks) would otherwise give a copy's links the clock of the copy, a second apart at times.
 */
export async function pinSymlinkTimes(root: string): Promise<void> {
  const t = new Date("2024-01-01T00:00:00Z");
  await lutimes(join(root, "lib"), t, t);
}

export async function startTree(root: string): Promise<void> {
  for (const d of [
    "var/lib/dpkg/info",
    "var/lib/dpkg/updates",
    "var/lib/dpkg/triggers",
    "etc",
    "usr/lib",
    "usr/bin",
  ]) {
    await mkdir(join(root, d), { recursive: true });
  }
  await writeFile(join(root, "var/lib/dpkg/status"), INSTALLED);
  await writeFile(join(root, "var/lib/dpkg/available"), "");
  await writeFile(join(root, "var/lib/dpkg/triggers/File"), "/usr/share/demo-doc trigger-watcher\n");
  await writeFile(join(root, "var/lib/dpkg/info/trigger-watcher.list"), "/.\n");
  await writeFile(join(root, "var/lib/dpkg/info/trigger-watcher.triggers"), "interest /usr/share/demo-doc\n");
  await writeFile(
    join(root, "var/lib/dpkg/diversions"),
    "/usr/bin/demo-diverted\n/usr/bin/demo-diverted.distrib\n:\n",
  );
  // The host's databases, so owner names resolve the same for dpkg (host NSS) and for us (the guest's).
  await cp("/etc/passwd", join(root, "etc/passwd"));
  await cp("/etc/group", join(root, "etc/group"));
  await symlink("usr/lib", join(root, "lib")); // merged /usr
  await pinSymlinkTimes(root);
  await writeFile(join(root, "etc/demo.conf"), "locally modified\n");
}

export const DEMO: DebSpec = {
  name: "demo",
  version: "1:2.0~rc1-3",
  fields: {
    Depends: "libc6 (>= 2.36)",
    Section: "admin",
    Priority: "optional",
    Homepage: "https://example.invalid/",
  },
  files: {
    "usr/bin/demo": { content: "#!/bin/sh\necho demo\n", mode: 0o755 },
    "usr/bin/demo-suid": { content: "suid\n", mode: 0o4755, gid: 1 },
    "usr/bin/demo-link": { hardlink: "usr/bin/demo" },
    "usr/bin/demo-sym": { symlink: "demo" },
    "usr/bin/demo-diverted": "diverted\n",
    "usr/share/demo-doc/README": "read me\n",
    "usr/share/demo-doc/abs": { symlink: "/etc/demo.conf" },
    "lib/demo/plugin.so": { content: "plugin\n", mode: 0o644, uid: 1, gid: 1 },
    "var/lib/demo": { dir: true, mode: 0o2750, uid: 1, gid: 1 },
    "etc/demo.conf": "shipped\n",
    "etc/demo-new.conf": "fresh\n",
  },
  control: {
    conffiles: "/etc/demo.conf\n/etc/demo-new.conf\n",
    postinst: "#!/bin/sh\nexit 0\n",
    triggers: "interest-noawait /usr/share/demo-interest\n",
  },
};
