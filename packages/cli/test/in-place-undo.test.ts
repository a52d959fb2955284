/**
 * --in-place safety: a run that fails (an operation throwing halfway, a write failing midway) leaves
 * the input byte-identical (sha256), rolled back from its undo log before the command returns; a
 * crashed run leaves the undo file, later runs refuse the image and `imgpatch rollback` restores it.
 * Raw and qcow2 inputs; success leaves no undo file.
 */
import { createHash } from "node:crypto";
import { copyFile, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FaultyDevice, undoPathFor } from "@imgpatch/disk";
import { convertImage } from "@imgpatch/qcow2";
import { copySparse, tempDir } from "@imgpatch/testkit";
import { beforeAll, describe, expect, it } from "vitest";
import { runSteps } from "../src/commands/main.js";
import { orderedSteps } from "../src/commands/recipe.js";
import { openGuest } from "../src/image/open-guest.js";
import { baseImage } from "../src/main-job.js";
import { cliInProcess } from "./support/cli-in-process.js";

const sha = async (p: string) =>
  createHash("sha256")
    .update(await readFile(p))
    .digest("hex");
const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

const cli = (args: string[]) => cliInProcess(args);

describe.each(["qcow2", "raw"] as const)("--in-place undo log (%s input)", (format) => {
  let dir: string;
  let pristine: string;
  let big: string;
  let n = 0;
  beforeAll(async () => {
    dir = await tempDir(`cli-undo-${format}-`);
    pristine = join(dir, `pristine.${format}`);
    if (format === "qcow2") await copyFile(await baseImage(), pristine);
    else await convertImage(await baseImage(), pristine, { format: "raw" });
    big = join(dir, "big.bin");
    // big enough that the editor writes data blocks to the image before the run ends
    const data = new Uint8Array(24 << 20);
    for (let i = 0; i < data.length; i += 512) data[i] = (i >> 9) & 0xff;
    await writeFile(big, data);
  });
  async function copy(): Promise<{ img: string; sum: string }> {
    const img = join(dir, `img-${n++}.${format}`);
    await copySparse(pristine, img);
    return { img, sum: await sha(img) };
  }
  const steps = () =>
    orderedSteps([
      "--mkdir",
      "/opt/agent",
      "--upload",
      `${big}:/opt/agent/big.bin`,
      "--write",
      "/opt/agent/a:hi",
    ]);

  it("an operation failing halfway through a customize run: exit 4, input byte-identical, no undo file", async () => {
    const { img, sum } = await copy();
    const r = await cli([
      "customize",
      img,
      "--in-place",
      "--mkdir",
      "/opt/agent",
      "--upload",
      `${big}:/opt/agent/big.bin`,
      "--chmod",
      "0644:/no/such/file",
      "--write",
      "/opt/agent/never:x",
    ]);
    expect(r.code).toBe(4);
    expect(r.err).toMatch(/no\/such\/file/);
    expect(await sha(img)).toBe(sum);
    expect(await exists(undoPathFor(img))).toBe(false);
  });

  it.each([0, 2, 8, 16, 23])("a write failing midway (after %i writes): input byte-identical", async (k) => {
    const { img, sum } = await copy();
    let faulty: FaultyDevice | undefined;
    const g = await openGuest(img, {
      inPlace: true,
      testHooks: {
        wrapDevice: (d) => (faulty = new FaultyDevice(d, { failAfterWrites: k, tornBytes: 100 })),
      },
    });
    await expect(
      (async () => {
        await runSteps(g, await steps(), {});
        await g.commit();
      })(),
    ).rejects.toThrow(/simulated failure/);
    await g.close();
    expect(faulty?.faulted).toBe(true);
    expect(await sha(img)).toBe(sum);
    expect(await exists(undoPathFor(img))).toBe(false);
  });

  it("success: the edits are there and no undo file is left", async () => {
    const { img, sum } = await copy();
    let counter: FaultyDevice | undefined;
    const g = await openGuest(img, {
      inPlace: true,
      testHooks: {
        wrapDevice: (d) => (counter = new FaultyDevice(d, { failAfterWrites: Number.POSITIVE_INFINITY })),
      },
    });
    await runSteps(g, await steps(), {});
    expect(await exists(undoPathFor(img))).toBe(true); // while the run is open
    await g.commit();
    // the failure points above (0..23) all fall inside this run's writes
    expect(counter?.writesSeen).toBeGreaterThan(23);
    expect(await exists(undoPathFor(img))).toBe(false);
    expect(await sha(img)).not.toBe(sum);
    const r = await cli(["cat", img, "/opt/agent/a"]);
    expect(r.out).toBe("hi");
  });

  it("a crash leaves the undo file: writes refuse the image, reads warn, `imgpatch rollback` restores it", async () => {
    const { img, sum } = await copy();
    const g = await openGuest(img, {
      inPlace: true,
      testHooks: {
        wrapDevice: (d) => new FaultyDevice(d, { failAfterWrites: 12 }),
        skipRollback: true, // as if the process died here
      },
    });
    await expect(
      (async () => {
        await runSteps(g, await steps(), {});
        await g.commit();
      })(),
    ).rejects.toThrow(/simulated failure/);
    await g.close();
    expect(await sha(img)).not.toBe(sum); // half-edited
    expect(await exists(undoPathFor(img))).toBe(true);

    let r = await cli(["customize", img, "--in-place", "--mkdir", "/x"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/imgpatch rollback/);
    r = await cli(["customize", img, "--overlay", join(dir, `ov-${n}.qcow2`), "--mkdir", "/x"]);
    expect(r.code).toBe(1);
    r = await cli(["-v", "info", img]);
    expect(r.out).toMatch(/unfinished --in-place run/);

    r = await cli(["rollback", img, "--dry-run"]);
    expect(r.code).toBe(0);
    expect(await exists(undoPathFor(img))).toBe(true);
    r = await cli(["rollback", img]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/rolled back/);
    expect(await sha(img)).toBe(sum);
    expect(await exists(undoPathFor(img))).toBe(false);
    r = await cli(["rollback", img]);
    expect(r.code).toBe(2);
  });
});

describe("--in-place on something that does not open", () => {
  it("an unreadable image is refused untouched, and no undo file is left behind", async () => {
    const dir = await tempDir("cli-undo-bad-");
    const img = join(dir, "junk.img");
    await writeFile(img, new Uint8Array(1 << 20).fill(0x5a));
    const sum = await sha(img);
    const r = await cli(["customize", img, "--in-place", "--mkdir", "/x"]);
    expect(r.code).toBe(3);
    expect(await sha(img)).toBe(sum);
    expect(await exists(undoPathFor(img))).toBe(false);
  });
});
