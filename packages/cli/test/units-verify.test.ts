import { copyFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { bakeElements } from "../src/elements/apply.js";
import { FIRSTBOOT } from "../src/guest/firstboot.js";
import { HostDirGuestFs } from "../src/guest/host-dir-fs.js";

const STANDIN = fileURLToPath(new URL("../../../test-fixtures/elements", import.meta.url));

/** The host's system unit directories (targets are copied so the guest tree has sysinit.target etc.). */
async function hostUnitDirs(): Promise<string[]> {
  const r = await runTool("systemd-analyze", ["unit-paths"]);
  return r.stdout
    .toString()
    .split("\n")
    .filter((p) => /^\/(usr\/)?lib\/systemd\/system$/.test(p));
}

describeWithTools(["systemd-analyze"], "oracle: systemd-analyze verify of the units we write", () => {
  it("the first-boot unit, the os-collect-config unit and its drop-in load without any complaint", async () => {
    const root = await tempDir();
    const fs = new HostDirGuestFs(root);
    await fs.mkdir("/usr/lib/systemd/system", { recursive: true });
    // The agent binary only appears at first boot; a placeholder lets verify check ExecStart.
    await fs.mkdir("/usr/local/bin", { recursive: true });
    await fs.writeFile("/usr/local/bin/os-collect-config", "#!/bin/sh\n", { mode: 0o755 });
    await bakeElements(fs, { elementsPath: STANDIN, elements: ["os-collect-config", "heat-config-script"] });
    for (const dir of await hostUnitDirs()) {
      for (const n of await readdir(dir)) {
        if (n.endsWith(".target"))
          await copyFile(join(dir, n), join(root, "usr/lib/systemd/system", n)).catch(() => undefined);
      }
    }
    const r = await runTool("systemd-analyze", [
      "verify",
      `--root=${root}`,
      join(root, FIRSTBOOT.unitPath),
      join(root, "usr/lib/systemd/system/os-collect-config.service"),
    ]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
  });
});
