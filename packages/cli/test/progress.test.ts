/** Progress bars: rate-limited percentage frames on a terminal, nothing when piped, --quiet or --json. */
import { execFileSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { qemuImgCompare, tempDir } from "@imgpatch/testkit";
import { beforeAll, describe, expect, it } from "vitest";
import { type CliIo, runCli } from "../src/commands/main.js";
import { formatBytes, formatProgress, progressBar, REDRAW_MS } from "../src/commands/progress.js";
import { baseImage } from "../src/main-job.js";

/** The frames (one per "\r") that carry a percentage, for bars whose label starts with `label`. */
function percentages(err: string, label: string): number[] {
  const out: number[] = [];
  for (const frame of err.split("\r")) {
    if (!frame.startsWith(label)) continue;
    const m = /\s(\d+)%\s/.exec(frame);
    if (m) out.push(Number(m[1]));
  }
  return out;
}

function expectCompleteBar(err: string, label: string): number[] {
  const p = percentages(err, label);
  expect(p.length).toBeGreaterThan(0);
  for (let i = 1; i < p.length; i++) expect(p[i]).toBeGreaterThanOrEqual(p[i - 1]);
  expect(p[p.length - 1]).toBe(100);
  expect(err.endsWith("\r\x1b[K")).toBe(true); // the line is erased at the end
  return p;
}

async function cli(args: string[], isTTY: boolean) {
  let out = "";
  let err = "";
  const io: CliIo = {
    out: (t) => (out += t),
    err: (t) => (err += t),
    isTTY,
    env: { SOURCE_DATE_EPOCH: "1700000000" },
  };
  const code = await runCli(args, io);
  return { code, out, err };
}

describe("progress bar", () => {
  it("redraws at most every REDRAW_MS, never goes back, ends at 100% and erases itself", () => {
    let now = 0;
    let text = "";
    const bar = progressBar(true, "copy", (t) => (text += t), { now: () => now });
    const total = 5000;
    for (let done = 0; done <= total; done += 7) {
      now += 3; // an update every 3 ms over ~2.1 s
      bar.update(done, total);
      bar.update(done - 100, total); // a smaller figure must not move the bar back
    }
    now += 1;
    bar.update(total, total);
    bar.finish();
    bar.update(1, total); // after finish: ignored
    const p = expectCompleteBar(text, "copy");
    expect(p.length).toBeLessThanOrEqual(Math.ceil(now / REDRAW_MS) + 2);
    expect(p.length).toBeGreaterThan(10);
  });

  it("does not draw 100% for a step that failed halfway, and erases what it drew", () => {
    let now = 0;
    let text = "";
    const bar = progressBar(true, "copy", (t) => (text += t), { now: () => now });
    bar.update(10, 100);
    now += 500;
    bar.update(40, 100);
    bar.finish();
    expect(percentages(text, "copy")).toEqual([10, 40]);
    expect(text.endsWith("\r\x1b[K")).toBe(true);
  });

  it("a disabled bar writes nothing; a bar that never drew writes nothing at finish", () => {
    let text = "";
    const off = progressBar(false, "x", (t) => (text += t));
    off.update(5, 10);
    off.finish();
    const idle = progressBar(true, "x", (t) => (text += t));
    idle.finish();
    expect(text).toBe("");
  });

  it("frame: bar, percentage, bytes, rate and ETA", () => {
    const f = formatProgress("writing out.qcow2", 512 * 2 ** 20, 2 * 2 ** 30, 4000);
    expect(f).toMatch(
      /^writing out\.qcow2 {2}\[#{6}·{18}\] {2} 25% {2}512 MiB\/2\.0 GiB {2}128 MiB\/s {2}ETA 0:12$/,
    );
    expect(formatProgress("x", 0, 100, 0)).not.toMatch(/ETA|\/s/);
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
  });
});

describe("progress in the CLI (fake terminal)", () => {
  let dir: string;
  let base: string;
  beforeAll(async () => {
    dir = await tempDir("cli-progress-");
    base = await baseImage();
  });

  it("convert: percentages on a terminal, nothing when piped, with --quiet or with --json", async () => {
    const tty = await cli(["convert", "-O", "raw", base, join(dir, "a.raw")], true);
    expect(tty.code).toBe(0);
    expectCompleteBar(tty.err, "converting");
    expect((await qemuImgCompare(base, join(dir, "a.raw"))).identical).toBe(true);
    for (const [args, isTTY] of [
      [["convert", "-O", "raw", base, join(dir, "b.raw")], false],
      [["-q", "convert", "-O", "raw", base, join(dir, "c.raw")], true],
      [["--json", "convert", "-O", "raw", base, join(dir, "d.raw")], true],
    ] as const) {
      const r = await cli([...args], isTTY);
      expect(r.code).toBe(0);
      expect(r.err).toBe("");
    }
  });

  it("customize: bars for a large upload, a copy-in and writing -o; none when piped", async () => {
    const big = join(dir, "big.bin");
    const data = new Uint8Array(20 << 20);
    for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
    await writeFile(big, data);
    const tree = join(dir, "tree");
    await mkdir(join(tree, "sub"), { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(join(tree, "sub", `f${i}`), new Uint8Array(10_000 + i));
    const args = (out: string) => [
      "customize",
      base,
      "-o",
      out,
      "--upload",
      `${big}:/big.bin`,
      "--copy-in",
      `${tree}:/`,
    ];
    const tty = await cli(args(join(dir, "o1.qcow2")), true);
    expect(tty.code).toBe(0);
    expectCompleteBar(tty.err, "upload big.bin");
    expectCompleteBar(tty.err, "copy-in");
    expectCompleteBar(tty.err, "writing o1.qcow2");
    const piped = await cli(args(join(dir, "o2.qcow2")), false);
    expect(piped.code).toBe(0);
    expect(piped.err).toBe("");
    // same result either way
    expect((await qemuImgCompare(join(dir, "o1.qcow2"), join(dir, "o2.qcow2"))).identical).toBe(true);
  });

  it("customize: bars for --tar-in (compressed bytes read) and --rpm payloads; none when piped", async () => {
    const src = join(dir, "tar-src");
    await mkdir(join(src, "app"), { recursive: true });
    for (let i = 0; i < 30; i++) await writeFile(join(src, "app", `m${i}`), new Uint8Array(5000 + i).fill(i));
    const tarball = join(dir, "app.tar.gz");
    execFileSync("tar", ["-czf", tarball, "-C", src, "app"]);
    const rpm = fileURLToPath(
      new URL("../../../test-fixtures/rpm/out/imgpatch-demo-xz.noarch.rpm", import.meta.url),
    );
    const args = (out: string) => [
      "customize",
      base,
      "-o",
      out,
      "--tar-in",
      `${tarball}:/opt`,
      "--rpm",
      rpm,
      "--rpm-owner-fallback",
    ];
    const tty = await cli(args(join(dir, "t1.qcow2")), true);
    expect(tty.code, tty.err).toBe(0);
    expectCompleteBar(tty.err, "tar-in app.tar.gz");
    expectCompleteBar(tty.err, "rpm imgpatch-demo");
    const piped = await cli(args(join(dir, "t2.qcow2")), false);
    expect(piped.code).toBe(0);
    expect(piped.err).toBe("");
    expect((await qemuImgCompare(join(dir, "t1.qcow2"), join(dir, "t2.qcow2"))).identical).toBe(true);
  });

  it("elements: a bar over the plan's files on a terminal, none when piped", async () => {
    const elementsPath = fileURLToPath(new URL("../../../test-fixtures/elements", import.meta.url));
    const args = (out: string) => [
      "elements",
      base,
      "-o",
      out,
      "--elements-path",
      elementsPath,
      "os-apply-config",
    ];
    const tty = await cli(args(join(dir, "e1.qcow2")), true);
    expect(tty.code, tty.err).toBe(0);
    expectCompleteBar(tty.err, "elements");
    const piped = await cli(args(join(dir, "e2.qcow2")), false);
    expect(piped.code).toBe(0);
    expect(piped.err).toBe("");
  });
});
