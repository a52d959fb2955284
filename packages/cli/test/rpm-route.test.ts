import { describe, expect, it } from "vitest";
import { OAC_TEMPLATES, OCC_CONF } from "../src/elements/known-elements.js";
import { finishRpmAgents } from "../src/elements/rpm-route.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";

describe("RPM route of the Heat agents", () => {
  it("enables os-collect-config, makes its config private, pins the rendered mode", async () => {
    const fs = new MemoryGuestFs();
    await fs.mkdir("/usr/lib/systemd/system", { recursive: true });
    await fs.mkdir(`${OAC_TEMPLATES}/etc`, { recursive: true });
    await fs.mkdir("/etc/systemd/system", { recursive: true });
    await fs.writeFile(
      "/usr/lib/systemd/system/os-collect-config.service",
      "[Install]\nWantedBy=multi-user.target\n",
    );
    await fs.writeFile(OCC_CONF, "[DEFAULT]\ncommand=os-refresh-config\n", { mode: 0o644 });
    await fs.writeFile(`${OAC_TEMPLATES}/etc/os-collect-config.conf`, "[DEFAULT]\n");
    const r = await finishRpmAgents(fs, {
      systemd: { searchPath: ["/etc/systemd/system", "/usr/lib/systemd/system"] },
    });
    expect(r.warnings).toEqual([]);
    expect(await fs.readlink("/etc/systemd/system/multi-user.target.wants/os-collect-config.service")).toBe(
      "/usr/lib/systemd/system/os-collect-config.service",
    );
    expect((await fs.lstat(OCC_CONF)).mode).toBe(0o600);
    expect(
      new TextDecoder().decode(await fs.readFile(`${OAC_TEMPLATES}/etc/os-collect-config.conf.oac`)),
    ).toBe("mode: 0600\n");
    // Idempotent.
    const again = await finishRpmAgents(fs, {
      systemd: { searchPath: ["/etc/systemd/system", "/usr/lib/systemd/system"] },
    });
    expect(again.actions).toEqual([
      "enabled: /etc/systemd/system/multi-user.target.wants/os-collect-config.service -> /usr/lib/systemd/system/os-collect-config.service",
    ]);
  });
  it("says what is missing", async () => {
    const r = await finishRpmAgents(new MemoryGuestFs());
    expect(r.warnings.join("\n")).toMatch(/not installed[\s\S]*missing/);
  });
});
