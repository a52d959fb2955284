import { describe, expect, it } from "vitest";
import { GuestIdentity, GuestIdentityError, parseGroup, parsePasswd } from "../src/guest/identity.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";

const PASSWD = `root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:2:2:daemon:/sbin:/sbin/nologin
centos:x:1000:1000:Cloud User:/home/centos:/bin/bash
broken:x:notanumber:1::/:/bin/sh
+nisuser
dup:x:1001:1001::/home/dup:/bin/sh
dup:x:1002:1002::/home/dup2:/bin/sh
`;
const GROUP = `root:x:0:
wheel:x:10:centos,dup
centos:x:1000:
`;

describe("guest identity", () => {
  it("parses passwd and group, skipping comments, NIS entries and malformed lines", () => {
    const warnings: string[] = [];
    const users = parsePasswd(PASSWD, warnings);
    expect(users.map((u) => u.name)).toEqual(["root", "daemon", "centos", "dup", "dup"]);
    expect(warnings).toEqual(["passwd line 5 is malformed"]);
    expect(users[2]).toEqual({
      name: "centos",
      uid: 1000,
      gid: 1000,
      gecos: "Cloud User",
      home: "/home/centos",
      shell: "/bin/bash",
    });
    expect(parseGroup(GROUP)[1]).toEqual({ name: "wheel", gid: 10, members: ["centos", "dup"] });
  });

  it("resolves USER:GROUP specs by name or number from the guest files", async () => {
    const fs = new MemoryGuestFs();
    await fs.mkdir("/etc");
    await fs.writeFile("/etc/passwd", PASSWD);
    await fs.writeFile("/etc/group", GROUP);
    const id = await GuestIdentity.load(fs);
    expect(id.resolveOwner("centos:wheel")).toEqual({ uid: 1000, gid: 10 });
    expect(id.resolveOwner("centos")).toEqual({ uid: 1000, gid: -1 });
    expect(id.resolveOwner("centos:")).toEqual({ uid: 1000, gid: 1000 });
    expect(id.resolveOwner(":wheel")).toEqual({ uid: -1, gid: 10 });
    expect(id.resolveOwner("4242:4343")).toEqual({ uid: 4242, gid: 4343 });
    expect(id.resolveOwner("1000:")).toEqual({ uid: 1000, gid: 1000 });
    expect(id.user("dup")?.uid).toBe(1001);
    expect(id.homeOf("centos")).toBe("/home/centos");
    expect(() => id.resolveOwner("nobody:wheel")).toThrow(GuestIdentityError);
    expect(() => id.resolveOwner("centos:nogroup")).toThrow(/no group "nogroup"/);
    expect(() => id.resolveOwner(":")).toThrow(/empty owner/);
    expect(() => id.resolveOwner("99999999999:0")).toThrow(GuestIdentityError);
  });

  it("an image without passwd resolves only numbers", async () => {
    const id = await GuestIdentity.load(new MemoryGuestFs());
    expect(id.resolveOwner("0:0")).toEqual({ uid: 0, gid: 0 });
    expect(() => id.resolveOwner("root")).toThrow(/no user "root"/);
  });
});
