import { cp, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import type { GuestFs } from "../src/guest/guest-fs.js";
import { HostDirGuestFs } from "../src/guest/host-dir-fs.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";
import {
  detectUnitLayout,
  disableUnit,
  enableUnit,
  maskUnit,
  parseUnitName,
  SystemdInstallError,
  UNIT_SEARCH_PATHS,
  unmaskUnit,
} from "../src/guest/systemd-install.js";
import { parseUnitFile, unitList, unitValue, unitValues } from "../src/guest/systemd-unit.js";

describe("unit file parser", () => {
  it("handles sections, comments, continuations, repeated keys and list resets", () => {
    const u = parseUnitFile(
      [
        "# comment",
        "[Unit]",
        "Description=multi \\",
        "  line \\",
        "# a comment inside a continuation is skipped",
        "  value",
        "; another comment",
        "[Install]",
        "WantedBy=a.target b.target",
        "WantedBy=",
        "WantedBy=c.target",
        'Alias="x.service" y.service',
        "[Install]",
        "WantedBy=d.target",
      ].join("\n"),
    );
    expect(unitValue(u, "Unit", "Description")?.replace(/\s+/g, " ")).toBe("multi line value");
    expect(unitList(u, "Install", "WantedBy")).toEqual(["c.target", "d.target"]);
    expect(unitValues(u, "Install", "WantedBy")).toEqual(["a.target b.target", "", "c.target", "d.target"]);
    expect(unitList(u, "Install", "Alias")).toEqual(["x.service", "y.service"]);
  });
  it("rejects garbage with a line number", () => {
    expect(() => parseUnitFile("[Unit]\nno equals sign\n", "/x.service")).toThrow(/x\.service.*line 2/);
    expect(() => parseUnitFile("Key=1\n")).toThrow(/outside of a section/);
  });
  it("validates unit names (no path tricks)", () => {
    expect(parseUnitName("foo@bar.service")).toMatchObject({
      prefix: "foo",
      instance: "bar",
      type: "service",
    });
    expect(parseUnitName("foo@.service").instance).toBe("");
    expect(() => parseUnitName("../../etc/passwd.service")).toThrow(SystemdInstallError);
    expect(() => parseUnitName("a/b.service")).toThrow(SystemdInstallError);
    expect(() => parseUnitName("foo.txt")).toThrow(SystemdInstallError);
  });
});

/** Writes a guest with units in several places, /lib → usr/lib. */
async function makeGuest(fs: GuestFs): Promise<void> {
  await fs.mkdir("/usr/lib/systemd/system", { recursive: true });
  await fs.mkdir("/usr/local/lib/systemd/system", { recursive: true });
  await fs.mkdir("/etc/systemd/system", { recursive: true });
  await fs.symlink("usr/lib", "/lib");
  const unit = async (path: string, install: string) =>
    fs.writeFile(
      path,
      `[Unit]\nDescription=test\n\n[Service]\nExecStart=/bin/true\n\n[Install]\n${install}\n`,
    );
  await unit("/usr/lib/systemd/system/simple.service", "WantedBy=multi-user.target");
  await unit(
    "/usr/lib/systemd/system/full.service",
    "WantedBy=multi-user.target \\\n  graphical.target\nRequiredBy=other.service\nAlias=fullalias.service\nAlso=helper.socket",
  );
  await unit("/usr/lib/systemd/system/helper.socket", "WantedBy=sockets.target");
  await unit("/usr/lib/systemd/system/tmpl@.service", "WantedBy=multi-user.target\nDefaultInstance=def");
  await unit("/usr/lib/systemd/system/nodef@.service", "WantedBy=multi-user.target");
  await unit("/usr/lib/systemd/system/spec@.service", "WantedBy=%p-%i.target\nAlias=spec-alias@.service");
  await unit("/etc/systemd/system/local.service", "WantedBy=multi-user.target\nAlias=localalias.service");
  await unit("/usr/local/lib/systemd/system/ulocal.service", "RequiredBy=multi-user.target");
  await unit("/usr/lib/systemd/system/shadowed.service", "WantedBy=multi-user.target");
  await unit("/etc/systemd/system/shadowed.service", "WantedBy=default.target");
  await fs.writeFile("/usr/lib/systemd/system/static.service", "[Service]\nExecStart=/bin/true\n");
  await unit("/usr/lib/systemd/system/cyc1.service", "WantedBy=multi-user.target\nAlso=cyc2.service");
  await unit("/usr/lib/systemd/system/cyc2.service", "WantedBy=multi-user.target\nAlso=cyc1.service");
}

async function linkSet(fs: GuestFs, dir = "/etc/systemd/system"): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const n of await fs.readdir(d)) {
      const p = `${d}/${n}`;
      const st = await fs.lstat(p);
      if (st.type === "symlink") out.push(`${p} -> ${await fs.readlink(p)}`);
      else if (st.type === "directory") await walk(p);
    }
  };
  await walk(dir);
  return out.sort();
}

const merged = { searchPath: UNIT_SEARCH_PATHS.merged };

describe("enableUnit / disableUnit / maskUnit (merged-usr guest)", () => {
  it("creates exactly the wants/requires/alias links, targets as found on the search path", async () => {
    const fs = new MemoryGuestFs();
    await makeGuest(fs);
    const r = await enableUnit(fs, "full.service", merged);
    expect(r.created.map((c) => c.path).sort()).toEqual([
      "/etc/systemd/system/fullalias.service",
      "/etc/systemd/system/graphical.target.wants/full.service",
      "/etc/systemd/system/multi-user.target.wants/full.service",
      "/etc/systemd/system/other.service.requires/full.service",
      "/etc/systemd/system/sockets.target.wants/helper.socket",
    ]);
    expect(new Set(r.created.map((c) => c.target))).toEqual(
      new Set(["/usr/lib/systemd/system/full.service", "/usr/lib/systemd/system/helper.socket"]),
    );
    expect((await fs.lstat("/etc/systemd/system/multi-user.target.wants")).mode).toBe(0o755);
    // Idempotent.
    const again = await enableUnit(fs, "full.service", merged);
    expect(again.created).toEqual([]);
    expect(again.unchanged).toHaveLength(5);
    const d = await disableUnit(fs, "full.service", merged);
    expect(d.removed).toHaveLength(5);
    expect(await linkSet(fs)).toEqual([]);
  });

  it("templates: DefaultInstance, explicit instances, specifiers; missing instance is an error", async () => {
    const fs = new MemoryGuestFs();
    await makeGuest(fs);
    await enableUnit(fs, ["tmpl@.service", "tmpl@foo.service", "spec@x.service"], merged);
    expect(await linkSet(fs)).toEqual([
      "/etc/systemd/system/multi-user.target.wants/tmpl@def.service -> /usr/lib/systemd/system/tmpl@.service",
      "/etc/systemd/system/multi-user.target.wants/tmpl@foo.service -> /usr/lib/systemd/system/tmpl@.service",
      "/etc/systemd/system/spec-alias@x.service -> /usr/lib/systemd/system/spec@.service",
      "/etc/systemd/system/spec-x.target.wants/spec@x.service -> /usr/lib/systemd/system/spec@.service",
    ]);
    await expect(enableUnit(fs, "nodef@.service", merged)).rejects.toThrow(/DefaultInstance/);
    await disableUnit(fs, "tmpl@.service", merged);
    expect(await linkSet(fs)).toHaveLength(2);
  });

  it("the /etc copy shadows the vendor one; Also= cycles terminate; static units only warn", async () => {
    const fs = new MemoryGuestFs();
    await makeGuest(fs);
    await enableUnit(fs, ["shadowed.service", "cyc1.service", "ulocal.service", "local.service"], merged);
    const w = await enableUnit(fs, "static.service", merged);
    expect(w.warnings[0]).toMatch(/no installation config/);
    expect(await linkSet(fs)).toEqual([
      "/etc/systemd/system/default.target.wants/shadowed.service -> /etc/systemd/system/shadowed.service",
      "/etc/systemd/system/localalias.service -> /etc/systemd/system/local.service",
      "/etc/systemd/system/multi-user.target.requires/ulocal.service -> /usr/local/lib/systemd/system/ulocal.service",
      "/etc/systemd/system/multi-user.target.wants/cyc1.service -> /usr/lib/systemd/system/cyc1.service",
      "/etc/systemd/system/multi-user.target.wants/cyc2.service -> /usr/lib/systemd/system/cyc2.service",
      "/etc/systemd/system/multi-user.target.wants/local.service -> /etc/systemd/system/local.service",
    ]);
  });

  it("a unit reachable only through /lib is not found by a merged-usr systemd", async () => {
    const fs = new MemoryGuestFs();
    await fs.mkdir("/lib/systemd/system", { recursive: true });
    await fs.writeFile("/lib/systemd/system/old.service", "[Install]\nWantedBy=multi-user.target\n");
    await expect(enableUnit(fs, "old.service", merged)).rejects.toThrow(/not found/);
    expect(await detectUnitLayout(fs)).toBe("split-usr");
    const r = await enableUnit(fs, "old.service");
    expect(r.created[0].target).toBe("/lib/systemd/system/old.service");
  });

  it("refuses conflicting links without writing anything, replaces them with force", async () => {
    const fs = new MemoryGuestFs();
    await makeGuest(fs);
    await fs.symlink("/elsewhere", "/etc/systemd/system/fullalias.service");
    await expect(enableUnit(fs, "full.service", merged)).rejects.toThrow(
      /already exists and is a symlink to \/elsewhere/,
    );
    expect(await linkSet(fs)).toEqual(["/etc/systemd/system/fullalias.service -> /elsewhere"]);
    await enableUnit(fs, "full.service", { ...merged, force: true });
    expect(await fs.readlink("/etc/systemd/system/fullalias.service")).toBe(
      "/usr/lib/systemd/system/full.service",
    );
    await expect(enableUnit(fs, "missing.service", merged)).rejects.toThrow(/not found/);
  });

  it("mask and unmask; masked units cannot be enabled; disable leaves masks alone", async () => {
    const fs = new MemoryGuestFs();
    await makeGuest(fs);
    await maskUnit(fs, "simple.service");
    expect(await fs.readlink("/etc/systemd/system/simple.service")).toBe("/dev/null");
    await expect(enableUnit(fs, "simple.service", merged)).rejects.toThrow(/masked/);
    expect((await disableUnit(fs, "simple.service", merged)).warnings[0]).toMatch(/masked/);
    expect(await fs.readlink("/etc/systemd/system/simple.service")).toBe("/dev/null");
    await expect(maskUnit(fs, "local.service")).rejects.toThrow(/already exists/);
    await unmaskUnit(fs, "simple.service");
    await enableUnit(fs, "simple.service", merged);
    expect(await linkSet(fs)).toEqual([
      "/etc/systemd/system/multi-user.target.wants/simple.service -> /usr/lib/systemd/system/simple.service",
    ]);
  });
});

/** The host systemctl's own unit search path (without /run), so both sides search the same dirs. */
async function hostSearchPath(): Promise<string[]> {
  const r = await runTool("systemd-analyze", ["unit-paths"]);
  return r.stdout
    .toString()
    .split("\n")
    .filter((p) => p.startsWith("/") && !p.startsWith("/run/"));
}

async function hostLinks(root: string): Promise<string[]> {
  const out: string[] = [];
  const base = join(root, "etc/systemd/system");
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isSymbolicLink()) out.push(`${p.slice(root.length)} -> ${await readlink(p)}`);
      else if (e.isDirectory()) await walk(p);
    }
  };
  await walk(base);
  return out.sort();
}

describeWithTools(["systemctl", "systemd-analyze"], "oracle: systemctl --root", () => {
  const cases: Array<[string, string[], string[]]> = [
    ["enable simple", ["enable", "simple.service"], []],
    ["enable with RequiredBy/Alias/Also", ["enable", "full.service"], []],
    ["enable template default instance", ["enable", "tmpl@.service"], []],
    ["enable template explicit instances", ["enable", "tmpl@foo.service", "tmpl@bar.service"], []],
    ["enable specifiers", ["enable", "spec@x.service"], []],
    [
      "enable /etc and /usr/local units, shadowing",
      ["enable", "local.service", "ulocal.service", "shadowed.service"],
      [],
    ],
    ["enable Also cycle", ["enable", "cyc1.service"], []],
    ["disable after enable", ["disable", "full.service"], ["full.service"]],
    ["disable template", ["disable", "tmpl@.service"], ["tmpl@.service", "tmpl@foo.service"]],
    ["mask", ["mask", "simple.service"], []],
    ["disable keeps mask", ["disable", "simple.service"], ["simple.service", "MASK simple.service"]],
  ];
  for (const [title, args, pre] of cases) {
    it(title, async () => {
      const search = await hostSearchPath();
      const a = await tempDir();
      const oursFs = new HostDirGuestFs(a);
      await makeGuest(oursFs);
      // Preconditions: applied with our code on both copies (the oracle then judges the operation).
      for (const p of pre) {
        if (p.startsWith("MASK ")) await maskUnit(oursFs, p.slice(5));
        else await enableUnit(oursFs, p, { searchPath: search });
      }
      const b = await tempDir();
      await cp(a, b, { recursive: true, verbatimSymlinks: true });
      const [verb, ...units] = args;
      const r = await runTool("systemctl", [`--root=${b}`, verb, ...units]);
      expect(r.exitCode, r.stderr).toBe(0);
      if (verb === "enable") await enableUnit(oursFs, units, { searchPath: search });
      else if (verb === "disable") await disableUnit(oursFs, units, { searchPath: search });
      else for (const u of units) await maskUnit(oursFs, u);
      expect(await hostLinks(a)).toEqual(await hostLinks(b));
      expect((await hostLinks(a)).length + pre.length).toBeGreaterThan(0);
    });
  }
});
