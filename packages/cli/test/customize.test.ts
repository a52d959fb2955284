import { chmod, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { guestGlob } from "../src/customize/glob.js";
import {
  applyOperation,
  type CustomizeOp,
  CustomizeUsageError,
  parseCommandsFile,
  parseOperation,
} from "../src/customize/operations.js";
import { FIRSTBOOT } from "../src/guest/firstboot.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function guest(): Promise<MemoryGuestFs> {
  const fs = new MemoryGuestFs();
  for (const d of [
    "/etc/selinux",
    "/home/centos",
    "/root",
    "/usr/share/zoneinfo/Europe",
    "/usr/lib/systemd/system",
    "/opt",
    "/tmp",
  ]) {
    await fs.mkdir(d, { recursive: true });
  }
  await fs.chown("/home/centos", 1000, 1000);
  await fs.writeFile(
    "/etc/passwd",
    "root:x:0:0:root:/root:/bin/bash\ncentos:x:1000:1000::/home/centos:/bin/bash\n",
  );
  await fs.writeFile("/etc/group", "root:x:0:\nwheel:x:10:centos\ncentos:x:1000:\n");
  await fs.writeFile("/etc/hostname", "localhost.localdomain\n");
  await fs.writeFile(
    "/etc/hosts",
    "127.0.0.1 localhost localhost.localdomain\n# localhost.localdomain stays in comments\n",
  );
  await fs.writeFile("/etc/selinux/config", "# c\nSELINUX=enforcing\nSELINUXTYPE=targeted\n");
  await fs.writeFile("/usr/share/zoneinfo/Europe/Paris", "TZif");
  await fs.writeFile("/usr/lib/systemd/system/foo.service", "[Install]\nWantedBy=multi-user.target\n");
  return fs;
}

async function applyAll(fs: MemoryGuestFs, ops: CustomizeOp[]): Promise<string[]> {
  const out: string[] = [];
  const ctx = { systemd: { searchPath: ["/etc/systemd/system", "/usr/lib/systemd/system"] } };
  for (const op of ops) out.push(...(await applyOperation(fs, op, ctx)));
  return out;
}

describe("operation parsing", () => {
  it("parses virt-customize style arguments", () => {
    expect(parseOperation("write", "/etc/x:a:b")).toEqual({ op: "write", path: "/etc/x", content: "a:b" });
    expect(parseOperation("chown", "centos:wheel:/home/centos/a:b")).toEqual({
      op: "chown",
      owner: "centos:wheel",
      path: "/home/centos/a:b",
    });
    expect(parseOperation("link", "/usr/bin/python3:/usr/bin/python:/usr/local/bin/py")).toEqual({
      op: "link",
      target: "/usr/bin/python3",
      links: ["/usr/bin/python", "/usr/local/bin/py"],
    });
    expect(parseOperation("chmod", "0640:/etc/x")).toEqual({ op: "chmod", mode: 0o640, path: "/etc/x" });
    expect(parseOperation("ssh-inject", "centos:string:ssh-ed25519 AAAA x@y")).toEqual({
      op: "ssh-inject",
      user: "centos",
      key: { string: "ssh-ed25519 AAAA x@y" },
    });
    expect(parseOperation("selinux-relabel", undefined)).toEqual({ op: "selinux-relabel" });
    for (const [n, a] of [
      ["write", "relative:x"],
      ["chmod", "rwx:/x"],
      ["chown", "a:/x"],
      ["bogus", "x"],
      ["hostname", "bad name"],
      ["timezone", "../../etc/passwd"],
      ["mkdir", undefined],
    ] as const) {
      expect(() => parseOperation(n, a), `${n} ${a}`).toThrow(CustomizeUsageError);
    }
  });

  it("reads --commands-from-file syntax with comments and continuations", () => {
    const ops = parseCommandsFile(
      "# setup\nmkdir /opt/x\n\nwrite /opt/x/f:line1\\\nline2\n--touch /opt/x/g\nselinux-relabel\n",
    );
    expect(ops).toEqual([
      { op: "mkdir", path: "/opt/x" },
      { op: "write", path: "/opt/x/f", content: "line1\nline2" },
      { op: "touch", path: "/opt/x/g" },
      { op: "selinux-relabel" },
    ]);
    expect(() => parseCommandsFile("mkdir /a\nchmod x:/a\n", "cmds.txt")).toThrow(/cmds.txt: line 2/);
  });
});

describe("operations applied to a guest", () => {
  it("files, links, modes, owners, globs, moves and copies", async () => {
    const fs = await guest();
    await applyAll(
      fs,
      parseCommandsFile(
        [
          "mkdir /opt/app/conf",
          "write /opt/app/conf/a.conf:x=1",
          "append-line /opt/app/conf/a.conf:y=2",
          "append-line /opt/app/conf/new.conf:first",
          "chmod 0600:/opt/app/conf/a.conf",
          "chown centos:wheel:/opt/app/conf/a.conf",
          "link /opt/app/conf/a.conf:/etc/app.conf:/etc/app2.conf",
          "touch /opt/app/empty",
          "write /tmp/x.log:1",
          "write /tmp/y.log:2",
          "write /tmp/keep.txt:3",
          "delete /tmp/*.log",
          "mkdir /srv",
          "copy /opt/app:/srv",
          "move /srv/app/empty:/srv/app/moved",
          "delete /opt/app/conf",
        ].join("\n"),
      ),
    );
    expect(text(await fs.readFile("/srv/app/conf/a.conf"))).toBe("x=1\ny=2\n");
    expect(await fs.lstat("/srv/app/conf/a.conf")).toMatchObject({ mode: 0o600, uid: 1000, gid: 10 });
    expect(text(await fs.readFile("/srv/app/conf/new.conf"))).toBe("first\n");
    expect(await fs.readlink("/etc/app.conf")).toBe("/opt/app/conf/a.conf");
    expect(await fs.readlink("/etc/app2.conf")).toBe("/opt/app/conf/a.conf");
    expect(await fs.readdir("/tmp")).toEqual(["keep.txt"]);
    expect(await fs.readdir("/srv/app")).toEqual(["conf", "moved"]);
    expect(await fs.readdir("/opt/app")).toEqual(["empty"]);
    await expect(applyAll(fs, [parseOperation("write", "/nonexistent/dir/f:x")])).rejects.toThrow(
      /does not exist/,
    );
  });

  it("hostname, timezone, ssh-inject, selinux, systemd and first boot", async () => {
    const fs = await guest();
    const log = await applyAll(fs, [
      parseOperation("hostname", "node1.example.com"),
      parseOperation("timezone", "Europe/Paris"),
      parseOperation("ssh-inject", "centos:string:ssh-ed25519 AAAAkey user@host"),
      parseOperation("ssh-inject", "centos:string:ssh-ed25519 AAAAkey user@host"),
      parseOperation("selinux-permissive", undefined),
      parseOperation("selinux-relabel", undefined),
      parseOperation("selinux-autorelabel", undefined),
      parseOperation("enable", "foo.service"),
      parseOperation("firstboot-command", "echo hi"),
    ]);
    expect(text(await fs.readFile("/etc/hostname"))).toBe("node1.example.com\n");
    expect(text(await fs.readFile("/etc/hosts"))).toBe(
      "127.0.0.1 localhost localhost.localdomain\n# localhost.localdomain stays in comments\n",
    );
    expect(await fs.readlink("/etc/localtime")).toBe("../usr/share/zoneinfo/Europe/Paris");
    expect(await fs.lstat("/home/centos/.ssh")).toMatchObject({ mode: 0o700, uid: 1000, gid: 1000 });
    expect(await fs.lstat("/home/centos/.ssh/authorized_keys")).toMatchObject({
      mode: 0o600,
      uid: 1000,
      gid: 1000,
    });
    expect(text(await fs.readFile("/home/centos/.ssh/authorized_keys"))).toBe(
      "ssh-ed25519 AAAAkey user@host\n",
    );
    expect(log).toContain("/home/centos/.ssh/authorized_keys: key already present");
    expect(text(await fs.readFile("/etc/selinux/config"))).toBe(
      "# c\nSELINUX=permissive\nSELINUXTYPE=targeted\n",
    );
    // no policy in this guest (no file_contexts): the offline relabel writes nothing; the
    // first-boot marker is the explicit --selinux-autorelabel
    expect(log).toContain("SELinux: no active policy in the guest (disabled or absent); no labels written");
    expect((await fs.lstat("/.autorelabel")).type).toBe("file");
    expect(await fs.readlink("/etc/systemd/system/multi-user.target.wants/foo.service")).toBe(
      "/usr/lib/systemd/system/foo.service",
    );
    expect(await fs.readdir(FIRSTBOOT.pending)).toEqual(["000001-echo"]);
    await expect(applyAll(fs, [parseOperation("timezone", "Mars/Olympus")])).rejects.toThrow(
      /does not exist/,
    );
  });

  it("upload and copy-in from the host keep modes, root-owned, never follow host symlinks", async () => {
    const host = await tempDir();
    await mkdir(join(host, "tree/sub"), { recursive: true });
    await writeFile(join(host, "tree/run.sh"), "#!/bin/sh\n");
    await chmod(join(host, "tree/run.sh"), 0o750);
    await writeFile(join(host, "tree/sub/data"), "d");
    await symlink("/etc/shadow", join(host, "tree/sub/link"));
    await writeFile(join(host, "single"), "s");
    const fs = await guest();
    await applyAll(fs, [
      parseOperation("copy-in", `${join(host, "tree")}:/opt`),
      parseOperation("upload", `${join(host, "single")}:/root`),
    ]);
    expect(await fs.lstat("/opt/tree/run.sh")).toMatchObject({ mode: 0o750, uid: 0 });
    expect(await fs.readlink("/opt/tree/sub/link")).toBe("/etc/shadow");
    expect(text(await fs.readFile("/root/single"))).toBe("s");
  });

  it("globs match per component, dot-files only when asked", async () => {
    const fs = new MemoryGuestFs();
    await fs.mkdir("/a/b1", { recursive: true });
    await fs.mkdir("/a/b2", { recursive: true });
    await fs.writeFile("/a/b1/x.txt", "");
    await fs.writeFile("/a/b2/x.txt", "");
    await fs.writeFile("/a/.hidden", "");
    expect(await guestGlob(fs, "/a/b?/*.txt")).toEqual(["/a/b1/x.txt", "/a/b2/x.txt"]);
    expect(await guestGlob(fs, "/a/*")).toEqual(["/a/b1", "/a/b2"]);
    expect(await guestGlob(fs, "/a/.*")).toEqual(["/a/.hidden"]);
    expect(await guestGlob(fs, "/a/b[!1]")).toEqual(["/a/b2"]);
    expect(await guestGlob(fs, "/nope/*")).toEqual([]);
  });
});
