/** Runs the README's example block against a repository built here, so the API cannot drift. */
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import { expect, it, vi } from "vitest";
import { makeRepo } from "./repo-builder.js";

const pkgDir = fileURLToPath(new URL("..", import.meta.url));

describeWithTools(["rpmbuild", "createrepo_c"], "README", () => {
  it("example runs and prints what the README says", async () => {
    const dir = await tempDir("rpm-repo-readme-");
    const repo = await makeRepo(dir, "repo", [
      { name: "app", requires: ["lib >= 2"], recommends: ["extra"] },
      { name: "lib", version: "1.0" },
      { name: "lib", version: "2.0" },
      { name: "extra" },
    ]);
    const readme = readFileSync(join(pkgDir, "README.md"), "utf8");
    const blocks = [...readme.matchAll(/```(ts)?\n([\s\S]*?)```/g)];
    const code = blocks[0]![2]!
      .replace(`from "@imgpatch/rpm-repo"`, `from ${JSON.stringify(join(pkgDir, "src/index.ts"))}`)
      .replace(`"/srv/repo"`, JSON.stringify(repo));
    const file = join(dir, "example.ts");
    await writeFile(file, code);
    const logs: string[] = [];
    const { inspect } = await import("node:util");
    const spy = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => {
      logs.push(a.map((x) => (typeof x === "string" ? x : inspect(x))).join(" "));
    });
    try {
      await import(file);
    } finally {
      spy.mockRestore();
    }
    expect(logs.join("\n")).toBe(blocks[1]![2]!.trim());
  });
});
