import { execFile } from "node:child_process";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import {
  addFirstbootScript,
  FIRSTBOOT,
  firstbootCommandScript,
  firstbootUnitText,
  installFirstboot,
} from "../src/guest/firstboot.js";
import { HostDirGuestFs } from "../src/guest/host-dir-fs.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";
import { parseUnitFile, unitValue } from "../src/guest/systemd-unit.js";

const run = promisify(execFile);

async function runRunner(root: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run("sh", [join(root, FIRSTBOOT.runner)], {
      env: { ...process.env, IMGPATCH_FIRSTBOOT_ROOT: root },
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

const marker = (tag: string) =>
  `#!/bin/sh\necho "running ${tag}"\necho ${tag} >> "$IMGPATCH_FIRSTBOOT_ROOT/order.txt"\n`;

describe("first-boot install", () => {
  it("writes runner, unit and the enable link; unit is a oneshot that stays active", async () => {
    const fs = new MemoryGuestFs();
    const r = await installFirstboot(fs, { before: ["os-collect-config.service"] });
    expect(r.links).toEqual(["/etc/systemd/system/multi-user.target.wants/imgpatch-firstboot.service"]);
    expect(await fs.readlink(r.links[0])).toBe(FIRSTBOOT.unitPath);
    expect(await fs.lstat(FIRSTBOOT.runner)).toMatchObject({ mode: 0o755, uid: 0, gid: 0 });
    expect(await fs.lstat(FIRSTBOOT.pending)).toMatchObject({ type: "directory", mode: 0o700 });
    const unit = parseUnitFile(new TextDecoder().decode(await fs.readFile(FIRSTBOOT.unitPath)));
    expect(unitValue(unit, "Service", "Type")).toBe("oneshot");
    expect(unitValue(unit, "Service", "RemainAfterExit")).toBe("yes");
    expect(unitValue(unit, "Service", "ExecStart")).toBe(FIRSTBOOT.runner);
    expect(unitValue(unit, "Unit", "Before")).toContain("os-collect-config.service");
    // A later run keeps earlier orderings and does not duplicate the link.
    const again = await installFirstboot(fs, { before: ["other.service"] });
    expect(again.links).toHaveLength(1);
    const text = new TextDecoder().decode(await fs.readFile(FIRSTBOOT.unitPath));
    expect(text).toContain("os-collect-config.service");
    expect(text).toContain("other.service");
    expect(firstbootUnitText()).toContain("WantedBy=multi-user.target");
  });

  it("numbers scripts after everything ever queued", async () => {
    const fs = new MemoryGuestFs();
    expect(await addFirstbootScript(fs, "a b/c", "echo")).toBe(`${FIRSTBOOT.pending}/000001-a-b-c`);
    await fs.rename(`${FIRSTBOOT.pending}/000001-a-b-c`, `${FIRSTBOOT.done}/000001-a-b-c`);
    expect(await addFirstbootScript(fs, "../../x", "echo")).toBe(`${FIRSTBOOT.pending}/000002-x`);
  });
});

describe("first-boot runner executed on the host against a directory tree", () => {
  it("runs in order, logs, keeps going after a failure, runs each script once", async () => {
    const root = await tempDir();
    const fs = new HostDirGuestFs(root);
    await addFirstbootScript(fs, "first", marker("one"));
    await addFirstbootScript(fs, "fails", "#!/bin/sh\necho 'about to fail' >&2\nexit 3\n");
    await addFirstbootScript(fs, "no-shebang", 'echo three >> "$IMGPATCH_FIRSTBOOT_ROOT/order.txt"\n');
    await fs.chmod(`${FIRSTBOOT.pending}/000003-no-shebang`, 0o644);
    await addFirstbootScript(
      fs,
      "cmd",
      firstbootCommandScript('echo four >> "$IMGPATCH_FIRSTBOOT_ROOT/order.txt"'),
    );

    const r1 = await runRunner(root);
    expect(r1.code).toBe(1);
    expect(await readFile(join(root, "order.txt"), "utf8")).toBe("one\nthree\nfour\n");
    expect(r1.out).toMatch(/running one/);
    expect(r1.out).toMatch(/about to fail/);
    expect(r1.out).toMatch(/000002-fails FAILED with exit status 3/);
    const log = await readFile(join(root, FIRSTBOOT.log), "utf8");
    expect(log).toMatch(/running 000001-first[\s\S]*about to fail[\s\S]*000004-cmd finished/);
    expect((await stat(join(root, FIRSTBOOT.log))).mode & 0o777).toBe(0o600);
    expect(await readdir(join(root, FIRSTBOOT.pending))).toEqual([]);
    expect(await readdir(join(root, FIRSTBOOT.done))).toEqual([
      "000001-first",
      "000003-no-shebang",
      "000004-cmd",
    ]);
    expect(await readdir(join(root, FIRSTBOOT.failed))).toEqual(["000002-fails"]);
    await expect(stat(join(root, FIRSTBOOT.stamp))).rejects.toThrow();

    // Second boot: nothing reruns; still failed while failed/ is not empty.
    const r2 = await runRunner(root);
    expect(r2.code).toBe(1);
    expect(await readFile(join(root, "order.txt"), "utf8")).toBe("one\nthree\nfour\n");

    // The admin clears the failure; a later imgpatch run queues more scripts: only those run.
    await fs.unlink(`${FIRSTBOOT.failed}/000002-fails`);
    expect(await addFirstbootScript(fs, "later", marker("five"))).toBe(`${FIRSTBOOT.pending}/000005-later`);
    const r3 = await runRunner(root);
    expect(r3.code).toBe(0);
    expect(await readFile(join(root, "order.txt"), "utf8")).toBe("one\nthree\nfour\nfive\n");
    expect((await stat(join(root, FIRSTBOOT.stamp))).isFile()).toBe(true);
    const r4 = await runRunner(root);
    expect(r4.code).toBe(0);
    expect(await readFile(join(root, "order.txt"), "utf8")).toBe("one\nthree\nfour\nfive\n");
  });
});
