/** The README's examples, executed: the library snippet, the recipe, the error line, the command table. */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { debugfsCat, debugfsStat, e2fsck, qemuImg, tempDir } from "@imgpatch/testkit";
import { describe, expect, it } from "vitest";
import { type CliIo, runCli } from "../src/commands/main.js";
import { baseImage } from "../src/main-job.js";

const README = fileURLToPath(new URL("../README.md", import.meta.url));

function blocks(text: string, lang: string): string[] {
  const re = new RegExp("```" + lang + "\\n([\\s\\S]*?)```", "g");
  return [...text.matchAll(re)].map((m) => m[1]);
}

async function cli(args: string[]) {
  let out = "";
  let err = "";
  const io: CliIo = { out: (t) => (out += t), err: (t) => (err += t), env: {} };
  return { code: await runCli(args, io), out, err };
}

describe("README examples", () => {
  it("the library example runs as written (paths substituted) and its output passes e2fsck", async () => {
    const text = await readFile(README, "utf8");
    const [lib] = blocks(text, "ts");
    expect(lib).toContain('from "imgpatch"');
    const dir = await tempDir("readme");
    const out = join(dir, "out.qcow2");
    const src = lib
      .replace(
        'from "imgpatch"',
        `from ${JSON.stringify(fileURLToPath(new URL("../src/index.ts", import.meta.url)))}`,
      )
      .replace('"base.qcow2"', JSON.stringify(await baseImage()))
      .replace('"out.qcow2"', JSON.stringify(out))
      .replace("console.log(", "((..._: unknown[]) => {})(");
    const file = join(fileURLToPath(new URL(".", import.meta.url)), `.readme-example-${process.pid}.tmp.ts`);
    await writeFile(file, src);
    try {
      await import(/* @vite-ignore */ file);
    } finally {
      await import("node:fs/promises").then((f) => f.rm(file, { force: true }));
    }
    const raw = join(dir, "out.raw");
    await qemuImg(["convert", "-O", "raw", out, raw]);
    const root = { path: raw, offset: 67584 * 512 };
    expect((await e2fsck(root)).clean).toBe(true);
    expect((await debugfsCat(root, "/opt/agent/conf")).toString()).toBe("key=value\n");
    expect((await debugfsStat(root, "/opt/agent/conf")).perm).toBe(0o600);
  });

  it("the recipe example is accepted and applied in order (dry run)", async () => {
    const text = await readFile(README, "utf8");
    const [recipe] = blocks(text, "json");
    const dir = await tempDir("readme");
    await writeFile(join(dir, "r.json"), recipe);
    const r = await cli([
      "customize",
      "--dry-run",
      "--json",
      await baseImage(),
      "--recipe",
      join(dir, "r.json"),
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).operations.map((o: { op: string }) => o.op)).toEqual([
      "mkdir",
      "write",
      "selinux-relabel",
    ]);
  });

  it("the error line and every command in the table", async () => {
    const text = await readFile(README, "utf8");
    const base = await baseImage();
    const r = await cli(["cat", base, "/etc/nope"]);
    expect(r.code).toBe(4);
    expect(text).toContain(r.err.trim().replace(base, "base.qcow2"));
    const help = await cli(["--help"]);
    const table = text.slice(text.indexOf("## Commands"), text.indexOf("Reading commands take"));
    const names = [...table.matchAll(/^\| `([a-z]+) /gm)].map((m) => m[1]);
    expect(names.length).toBeGreaterThanOrEqual(12);
    for (const n of names) expect(help.out).toContain(`imgpatch ${n}`);
  });
});
