import { describe, expect, it } from "vitest";
import { injectRpms, MemoryTarget, planTransaction, readRpm } from "../src/index.js";
import { buildRpm, S_IFREG } from "./build-rpm.js";
import { fixtureRpm, GROUP, PASSWD } from "./helpers.js";

const enc = new TextEncoder();

async function guest() {
  const t = new MemoryTarget();
  await t.put("/etc/passwd", PASSWD);
  await t.put("/etc/group", GROUP);
  t.mutations = 0;
  return t;
}

describe("transactions of several packages", () => {
  it("installs all and merges first-boot steps in rpm's order", async () => {
    const t = await guest();
    const pkgs = [
      await readRpm(fixtureRpm("imgpatch-demo-gzip")),
      await readRpm(fixtureRpm("imgpatch-mini-zstd")),
    ];
    const { reports, firstboot } = await injectRpms(pkgs, t, { register: true });
    for (const p of pkgs) await p.close();
    expect(reports.map((r) => r.nevra)).toEqual([
      "imgpatch-demo-2:1.2-3.noarch",
      "imgpatch-mini-0.1-1.noarch",
    ]);
    expect(t.list().some((e) => e.path === "/usr/share/imgpatch-mini/blob.txt")).toBe(true);
    expect(firstboot.steps.map((s) => s.phase)).toEqual([
      "register",
      "register",
      "pretrans",
      "pre",
      "post",
      "posttrans",
    ]);
  });

  it("refuses conflicting files before writing anything", async () => {
    const t = await guest();
    const a = await readRpm(
      buildRpm({ name: "a", files: [{ path: "/opt/f", mode: S_IFREG | 0o644, content: enc.encode("a") }] }),
    );
    const b = await readRpm(
      buildRpm({ name: "b", files: [{ path: "/opt/f", mode: S_IFREG | 0o644, content: enc.encode("b") }] }),
    );
    await expect(injectRpms([a, b], t)).rejects.toMatchObject({ name: "InjectConflictError" });
    expect(t.mutations).toBe(0);
    // Identical files may be shared.
    const c = await readRpm(
      buildRpm({ name: "c", files: [{ path: "/opt/f", mode: S_IFREG | 0o644, content: enc.encode("a") }] }),
    );
    const { plans } = await planTransaction([a, c], t);
    expect(plans).toHaveLength(2);
    for (const p of [a, b, c]) await p.close();
  });

  it("a damaged package in the set leaves the target untouched", async () => {
    const t = await guest();
    const bytes = buildRpm({
      name: "bad",
      files: [{ path: "/opt/x", mode: S_IFREG | 0o644, content: enc.encode("x") }],
    });
    bytes[bytes.length - 5] ^= 0xff;
    const pkgs = [await readRpm(fixtureRpm("imgpatch-mini-gzip")), await readRpm(bytes)];
    await expect(injectRpms(pkgs, t)).rejects.toMatchObject({
      code: expect.stringMatching(/ECHECKSUM|EFORMAT/),
    });
    expect(t.mutations).toBe(0);
    for (const p of pkgs) await p.close();
  });
});
