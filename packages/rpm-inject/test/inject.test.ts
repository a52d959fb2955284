/**
 * Injection semantics on the in-memory target: owners by name, the fallback with its first-boot
 * chown, the dry-run plan, the report, device nodes, capabilities and first-boot ordering.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { rpmDump, runTool, tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import {
  encodeCapabilityXattr,
  formatPlan,
  HostDirTarget,
  injectRpm,
  MemoryTarget,
  mergeFirstbootPlans,
  parseCapabilityText,
  planInjection,
  RpmOwnerError,
  readRpm,
} from "../src/index.js";
import { describeAsRootWithTools, fixtureRpm, GROUP, PASSWD, snapshotTree } from "./helpers.js";

async function guestWith(passwd = PASSWD, group = GROUP): Promise<MemoryTarget> {
  const t = new MemoryTarget("guest");
  await t.put("/etc/passwd", passwd);
  await t.put("/etc/group", group);
  t.mutations = 0;
  return t;
}

describe("owners", () => {
  it("maps names through the guest's passwd/group", async () => {
    const t = await guestWith();
    const pkg = await readRpm(fixtureRpm("imgpatch-demo-zstd"));
    const { report, firstboot } = await injectRpm(pkg, t);
    await pkg.close();
    const db = t.list().find((e) => e.path === "/var/lib/imgpatch-demo/data.db");
    expect(db).toMatchObject({ uid: 990, gid: 991, perms: 0o640 });
    expect(report.unmetOwners).toEqual({ users: [], groups: [] });
    expect(firstboot.steps.map((s) => s.phase)).toEqual(["pretrans", "pre", "post", "posttrans"]);
  });

  it("a missing name is an error by default, mentioning %pre", async () => {
    const t = await guestWith("root:x:0:0::/:/bin/sh\n", "root:x:0:\n");
    const pkg = await readRpm(fixtureRpm("imgpatch-demo-zstd"));
    const err = await injectRpm(pkg, t).catch((e) => e);
    await pkg.close();
    expect(err).toBeInstanceOf(RpmOwnerError);
    expect(err.users).toEqual(["imgsvc"]);
    expect(err.groups).toEqual(["imgsvc"]);
    expect(err.message).toMatch(/%pre scriptlet/);
    expect(t.mutations).toBe(0);
  });

  it("falls back to root with a warning and a first-boot chown after %pre", async () => {
    const t = await guestWith("root:x:0:0::/:/bin/sh\n", "root:x:0:\n");
    const warnings: string[] = [];
    const pkg = await readRpm(fixtureRpm("imgpatch-demo-zstd"));
    const { report, firstboot } = await injectRpm(pkg, t, {
      missingOwner: "root",
      onWarning: (w) => warnings.push(w),
    });
    await pkg.close();
    expect(warnings.join("\n")).toMatch(/lacks user "imgsvc", group "imgsvc"/);
    expect(report.unmetOwners.users).toEqual(["imgsvc"]);
    const db = t.list().find((e) => e.path === "/var/lib/imgpatch-demo/data.db");
    expect(db).toMatchObject({ uid: 0, gid: 0, perms: 0o640 });
    const phases = firstboot.steps.map((s) => s.phase);
    expect(phases).toEqual(["pretrans", "pre", "owner-fixup", "post", "posttrans"]);
    const fix = firstboot.steps[2];
    expect(fix.body).toContain("chown -h 'imgsvc:imgsvc' '/var/lib/imgpatch-demo/data.db'");
    expect(fix.body).toContain("chmod 0750 '/var/lib/imgpatch-demo'");
    expect(fix.body).not.toContain("imgpatch-demo.log"); // ghost
  });
});

describe("plan and report", () => {
  it("dry run writes nothing and lists every decision", async () => {
    const t = await guestWith();
    await t.put("/etc/imgpatch-demo/keep.conf", "mine\n");
    await t.put("/etc/imgpatch-demo/plain.conf", "mine\n");
    await t.put("/etc/imgpatch-demo/same.conf", "same=1\n");
    t.mutations = 0;
    const pkg = await readRpm(fixtureRpm("imgpatch-demo-xz"));
    const plan = await planInjection(pkg, t);
    expect(t.mutations).toBe(0);
    const action = (p: string) => plan.files.find((f) => f.file.path === p)?.action;
    expect(action("/etc/imgpatch-demo/keep.conf")).toBe("rpmnew");
    expect(action("/etc/imgpatch-demo/plain.conf")).toBe("rpmorig");
    expect(action("/etc/imgpatch-demo/same.conf")).toBe("config-same");
    expect(action("/var/log/imgpatch-demo.log")).toBe("ghost");
    expect(plan.implicitDirs).toEqual([
      "/usr",
      "/var",
      "/usr/bin",
      "/usr/lib",
      "/usr/share",
      "/var/lib",
      "/usr/share/doc",
      "/usr/share/licenses",
      "/usr/share/doc/imgpatch-demo",
      "/usr/share/licenses/imgpatch-demo",
    ]);
    const text = formatPlan(plan);
    expect(text).toMatch(/rpmnew\s+file\s+\/etc\/imgpatch-demo\/keep\.conf\.rpmnew/);
    expect(text).toMatch(/firstboot .*pre: \/bin\/sh/);
    expect(text).toMatch(/trigger \(not run\) %triggerin -- bash/);
    expect(text).toMatch(/Lua scriptlet/);

    const { report } = await injectRpm(pkg, t);
    await pkg.close();
    expect(report.rpmnew).toEqual(["/etc/imgpatch-demo/keep.conf.rpmnew"]);
    expect(report.rpmorig).toEqual(["/etc/imgpatch-demo/plain.conf.rpmorig"]);
    expect(report.configKept).toEqual(["/etc/imgpatch-demo/same.conf"]);
    expect(report.ghostsSkipped).toEqual(["/var/log/imgpatch-demo.log"]);
    expect(report.deferredScriptlets.map((s) => s.phase)).toEqual(["pretrans", "pre", "post", "posttrans"]);
    expect(report.triggers).toEqual(["%triggerin -- bash"]);
    const files = Object.fromEntries(t.list().map((e) => [e.path, e]));
    expect(new TextDecoder().decode(files["/etc/imgpatch-demo/keep.conf"].data)).toBe("mine\n");
    expect(new TextDecoder().decode(files["/etc/imgpatch-demo/plain.conf.rpmorig"].data)).toBe("mine\n");
    expect(new TextDecoder().decode(files["/etc/imgpatch-demo/plain.conf"].data)).toBe("plain=1\n");
    expect(files["/usr/share/imgpatch-demo/hl1"].ino).toBe(files["/usr/share/imgpatch-demo/tree/hl3"].ino);
    expect(files["/usr/share/imgpatch-demo/hl1"].nlink).toBe(3);
    expect(files["/usr/bin/imgpatch-ping"].xattrs["security.capability"]).toEqual(
      encodeCapabilityXattr("cap_net_bind_service,cap_net_raw=ep"),
    );
    expect(files["/usr/lib/imgpatch-demo/empty"]).toMatchObject({
      type: "dir",
      perms: 0o700,
      mtime: 1700000000,
    });
  });

  it("register stores the RPM and registers it before the scriptlets", async () => {
    const t = await guestWith();
    const pkg = await readRpm(fixtureRpm("imgpatch-demo-gzip"));
    const { firstboot } = await injectRpm(pkg, t, { register: true });
    await pkg.close();
    const stored = firstboot.storedPackages[0].path;
    expect(stored).toBe("/var/lib/imgpatch/rpms/imgpatch-demo-2:1.2-3.noarch.rpm");
    const data = t.list().find((e) => e.path === stored)?.data;
    expect(Buffer.compare(Buffer.from(data ?? []), readFileSync(fixtureRpm("imgpatch-demo-gzip")))).toBe(0);
    expect(firstboot.steps[0].phase).toBe("register");
    expect(firstboot.steps[0].body).toMatch(/^rpm -i --justdb --nodeps --noscripts --notriggers/);
  });

  it("merges plans of several packages in rpm's transaction order", async () => {
    const t = await guestWith();
    const plans = [];
    for (const n of ["imgpatch-demo-gzip", "imgpatch-mini-gzip"]) {
      const pkg = await readRpm(fixtureRpm(n));
      plans.push((await planInjection(pkg, t, { register: true })).firstboot);
      await pkg.close();
    }
    const merged = mergeFirstbootPlans(plans);
    expect(merged.steps.map((s) => `${s.name}`)).toEqual([
      "01-imgpatch-demo-register",
      "02-imgpatch-mini-register",
      "03-imgpatch-demo-pretrans",
      "04-imgpatch-demo-pre",
      "05-imgpatch-demo-post",
      "06-imgpatch-demo-posttrans",
    ]);
    expect(merged.steps[4].args).toEqual(["1"]);
    expect(merged.storedPackages).toHaveLength(2);
  });
});

describe("capabilities", () => {
  it("parses libcap's text forms", () => {
    const bits = (n: number[]) => n.reduce((a, b) => a | (1n << BigInt(b)), 0n);
    expect(parseCapabilityText("cap_net_raw,cap_net_bind_service=ep")).toEqual({
      effective: bits([10, 13]),
      permitted: bits([10, 13]),
      inheritable: 0n,
    });
    expect(parseCapabilityText("cap_setuid+ip cap_sys_admin=p")).toEqual({
      effective: 0n,
      permitted: bits([7, 21]),
      inheritable: bits([7]),
    });
    expect(parseCapabilityText("=ep cap_sys_admin-e").effective & bits([21])).toBe(0n);
    expect(encodeCapabilityXattr("")).toBeUndefined();
    expect(() => parseCapabilityText("cap_bogus=ep")).toThrow(/unknown capability/);
  });
});

describeAsRootWithTools(["rpm", "setcap", "getfattr"], "capabilities vs setcap", () => {
  for (const text of [
    "cap_net_raw=ep",
    "cap_net_bind_service,cap_net_raw=ep",
    "cap_setuid+ip",
    "cap_bpf,cap_chown=eip",
  ]) {
    it(`${text}: same xattr as setcap writes`, async () => {
      const dir = await tempDir("caps-");
      const f = join(dir, "f");
      await runTool("touch", [f]);
      const r = await runTool("setcap", [text, f]);
      expect(r.exitCode, r.stderr).toBe(0);
      const snap = await snapshotTree(dir);
      expect(snap.get("/f")?.caps).toBe(
        `0x${Buffer.from(encodeCapabilityXattr(text) ?? []).toString("hex")}`,
      );
    });
  }
});

describeAsRootWithTools(["rpm", "mknod"], "device nodes and fifos", () => {
  it("are created as the header says (rpm -qp --dump)", async () => {
    const path = fixtureRpm("imgpatch-nodes-gzip");
    const dump = await rpmDump(path);
    const root = await tempDir("nodes-");
    const pkg = await readRpm(path);
    await injectRpm(pkg, new HostDirTarget(root));
    await pkg.close();
    const snap = await snapshotTree(root);
    for (const d of dump) {
      const e = snap.get(d.path);
      expect(e, d.path).toBeDefined();
      expect(e?.mode, d.path).toBe(d.mode & 0o7777);
      if (e?.type !== "dir") expect(e?.mtime, d.path).toBe(d.mtime); // dirs gain entries afterwards
      if (d.rdev !== 0) expect(e?.rdev, d.path).toBe(((d.rdev >> 8) << 8) | (d.rdev & 0xff));
    }
    expect(snap.get("/run/imgpatch/fifo")?.type).toBe("fifo");
    expect(snap.get("/run/imgpatch/null")?.type).toBe("chardev");
    expect(snap.get("/run/imgpatch/loop")?.type).toBe("blockdev");
  });
});
