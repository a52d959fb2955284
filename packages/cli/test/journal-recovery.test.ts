/**
 * An ext4 whose journal holds a committed transaction (built with debugfs jo/jw/jc: a new version
 * of a file's data block): every command reads the replayed tree, and an edit writes the replayed
 * filesystem into its output — e2fsck -fn clean, the journalled bytes in place, the input untouched.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  debugfs,
  debugfsBlocks,
  debugfsCat,
  describeWithTools,
  e2fsck,
  runToolOk,
  tempDir,
} from "@imgpatch/testkit";
import { expect, it } from "vitest";
import { type CliIo, runCli } from "../src/commands/main.js";

async function cli(args: string[]) {
  let out = "";
  let err = "";
  const io: CliIo = {
    out: (t) => (out += t),
    err: (t) => (err += t),
    env: { SOURCE_DATE_EPOCH: "1700000000" },
  };
  return { code: await runCli(args, io), out, err };
}
const sha = async (p: string) =>
  createHash("sha256")
    .update(await readFile(p))
    .digest("hex");

describeWithTools(["mke2fs", "debugfs", "e2fsck"], "ext4 journal needing recovery through the CLI", () => {
  it("reads the replayed tree, and writes it into the output before editing", async () => {
    const dir = await tempDir("journal-cli-");
    const tree = join(dir, "tree");
    await mkdir(tree);
    await writeFile(join(tree, "motd"), Buffer.alloc(4096, "o"));
    const img = join(dir, "fs.img");
    await runToolOk("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", "-d", tree, img, "32M"]);
    const [blk] = await debugfsBlocks(img, "/motd");
    const next = join(dir, "next");
    await writeFile(next, Buffer.alloc(4096, "n"));
    await debugfs(img, ["jo -c", `jw -b ${blk} ${next}`, "jc"], { write: true });
    expect((await debugfsCat(img, "/motd")).toString().slice(0, 4)).toBe("oooo"); // on disk: stale
    const before = await sha(img);

    const cat = await cli(["cat", img, "/motd"]);
    expect(cat.code, cat.err).toBe(0);
    expect(cat.out.slice(0, 4)).toBe("nnnn"); // what the kernel and e2fsck would show

    const out = join(dir, "out.raw");
    const r = await cli(["customize", img, "-o", out, "--write", "/hello:world"]);
    expect(r.code, r.err).toBe(0);
    expect(await sha(img)).toBe(before);
    const check = await e2fsck(out);
    expect(check.clean, check.output).toBe(true);
    expect((await debugfsCat(out, "/motd")).toString().slice(0, 4)).toBe("nnnn");
    expect((await debugfsCat(out, "/hello")).toString()).toBe("world");
  });
});
