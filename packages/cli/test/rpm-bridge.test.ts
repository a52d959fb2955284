import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { FIRSTBOOT } from "../src/guest/firstboot.js";
import { HostDirGuestFs } from "../src/guest/host-dir-fs.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";
import { injectTargetFromGuestFs, queueFirstbootPlan } from "../src/guest/rpm-bridge.js";

const run = promisify(execFile);

async function* chunks(...parts: string[]): AsyncIterable<Uint8Array> {
  for (const p of parts) yield new TextEncoder().encode(p);
}

describe("rpm-inject bridge", () => {
  it("answers existence like a fresh lstat whatever the order of changes (the cached directory names)", async () => {
    // Random changes through the target, checked after each against a target without the cache.
    let seed = 5;
    const r = () => {
      seed = (seed * 1664525 + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    const fs = new MemoryGuestFs();
    await fs.mkdir("/usr/bin", { recursive: true });
    await fs.symlink("usr/bin", "/bin");
    const t = injectTargetFromGuestFs(fs, "mem");
    const plain = injectTargetFromGuestFs(fs, "mem", undefined, false);
    const names = [
      "/bin/a",
      "/usr/bin/a",
      "/usr/bin/b",
      "/usr/d",
      "/usr/d/x",
      "/usr/d/y",
      "/bin/d2",
      "/usr/bin/d2/z",
    ];
    let checks = 0;
    for (let k = 0; k < 400; k++) {
      const p = names[Math.floor(r() * names.length)]!;
      const q = names[Math.floor(r() * names.length)]!;
      const op = Math.floor(r() * 6);
      try {
        if (op === 0) await t.writeFile(p, chunks("x"), 0o644);
        else if (op === 1) await t.mkdir(p, 0o755);
        else if (op === 2) await t.unlink(p);
        else if (op === 3) await t.rmdir(p);
        else if (op === 4) await t.rename(p, q);
        else await t.symlink("a", p);
      } catch {
        // Refused changes (a missing parent, a non-empty directory...) change nothing.
      }
      for (const n of names) {
        const outcome = (x: Promise<boolean>) => x.catch((e: { code?: string }) => e.code ?? "error");
        expect(await outcome(t.exists(n)), `step ${k} op ${op} ${p} ${q}: ${n}`).toBe(
          await outcome(plain.exists(n)),
        );
        checks++;
      }
    }
    expect(checks).toBe(3200);
  });

  it("InjectTarget over a GuestFs: never follows final symlinks, seconds timestamps, inode numbers", async () => {
    const fs = new MemoryGuestFs();
    const t = injectTargetFromGuestFs(fs, "mem");
    await t.mkdir("/usr", 0o755);
    await t.mkdir("/usr/bin", 0o755);
    await t.writeFile("/usr/bin/tool", chunks("#!/bin/sh\n", "echo\n"), 0o755);
    await t.link("/usr/bin/tool", "/usr/bin/tool2");
    await t.symlink("tool", "/usr/bin/alias");
    // Replacing a symlink writes a file in its place, never through it.
    await t.writeFile("/usr/bin/alias", chunks("new"), 0o644);
    expect(new TextDecoder().decode(await fs.readFile("/usr/bin/tool"))).toBe("#!/bin/sh\necho\n");
    expect((await t.lstat("/usr/bin/alias"))?.type).toBe("file");
    const a = await t.lstat("/usr/bin/tool");
    const b = await t.lstat("/usr/bin/tool2");
    expect(a).toMatchObject({ type: "file", perms: 0o755, nlink: 2, size: 15 });
    expect(a?.ino).toBe(b?.ino);
    await t.utimes("/usr/bin/tool", 100, 200);
    expect((await t.lstat("/usr/bin/tool"))?.mtime).toBe(200);
    await t.chown("/usr/bin/tool", 5, 6);
    expect(await t.lstat("/usr/bin/tool")).toMatchObject({ uid: 5, gid: 6 });
    await t.mknod("/usr/null", "chardev", 0o666, 1, 3);
    expect(await t.lstat("/usr/null")).toMatchObject({ type: "chardev", rdevMajor: 1, rdevMinor: 3 });
    expect(await t.exists("/usr/none")).toBe(false);
    const parts: Uint8Array[] = [];
    for await (const c of t.readFile("/usr/bin/tool")) parts.push(c);
    expect(Buffer.concat(parts).toString()).toBe("#!/bin/sh\necho\n");
  });

  it("deferred scriptlets run at first boot in plan order with rpm's arguments", async () => {
    const root = await tempDir();
    const fs = new HostDirGuestFs(root);
    const rec = (tag: string) => `echo "${tag} $1" >> "$IMGPATCH_FIRSTBOOT_ROOT/scriptlets"\n`;
    const paths = await queueFirstbootPlan(fs, {
      steps: [
        {
          name: "01-foo-pre",
          phase: "pre",
          package: "foo-1-1.noarch",
          interpreter: ["/bin/sh"],
          body: rec("pre"),
          args: ["1"],
        },
        {
          name: "02-foo-post",
          phase: "post",
          package: "foo-1-1.noarch",
          interpreter: ["/bin/sh", "-e"],
          body: rec("post"),
          args: ["1"],
        },
        { name: "03-custom", phase: "custom", interpreter: [], body: rec("custom"), args: [] },
      ],
      storedPackages: [],
    });
    expect(paths.map((p) => p.slice(FIRSTBOOT.pending.length + 1))).toEqual([
      "000001-01-foo-pre",
      "000002-02-foo-post",
      "000003-03-custom",
    ]);
    await run("sh", [join(root, FIRSTBOOT.runner)], {
      env: { ...process.env, IMGPATCH_FIRSTBOOT_ROOT: root },
    });
    expect(await readFile(join(root, "scriptlets"), "utf8")).toBe("pre 1\npost 1\ncustom \n");
  });
});
