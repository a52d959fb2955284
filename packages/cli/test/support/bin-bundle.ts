/**
 * The CLI entry points bundled from the current TypeScript sources, for tests that spawn them.
 * Spawning through tsx costs ~1 CPU-second per process before any work (loader hooks compile and
 * link ~140 modules); a bundle starts in ~0.15 s. The bundle is cached by testkit's `built()` under
 * a key over every source file of every package, so parallel test files share one build (the
 * first waits on a lock, the others reuse it) and any edit to a source gives a new build: the
 * tests still run the sources, never a stale dist/.
 *
 * Each module's `import.meta.url` is replaced by its source file's URL, so paths computed from it
 * (package.json for the version, the repository root of main-job.ts, createRequire bases) are the
 * ones the sources compute, wherever the bundle lives.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { built } from "@imgpatch/testkit";
import { build, version as esbuildVersion, type Plugin } from "esbuild";

const PACKAGES = fileURLToPath(new URL("../../../", import.meta.url));

/** Every .ts file under packages/<pkg>/src, sorted (the build's content key). */
function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ts")) out.push(p);
    }
  };
  for (const pkg of readdirSync(PACKAGES, { withFileTypes: true })) {
    if (!pkg.isDirectory()) continue;
    const src = join(PACKAGES, pkg.name, "src");
    try {
      walk(src);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
  }
  return out.sort();
}

/** @imgpatch/<pkg>[/<sub>] → packages/<pkg>/src/{index,<sub>}.ts, as vitest.config.ts aliases them. */
const sources: Plugin = {
  name: "imgpatch-sources",
  setup(b) {
    b.onResolve({ filter: /^@imgpatch\/[a-z0-9-]+(\/[a-z0-9-]+)?$/ }, (args) => {
      const [, pkg, sub] = /^@imgpatch\/([a-z0-9-]+)(?:\/([a-z0-9-]+))?$/.exec(args.path) ?? [];
      return { path: join(PACKAGES, pkg ?? "", "src", `${sub ?? "index"}.ts`) };
    });
    // Other bare specifiers (yargs, fflate, ...) load from node_modules at run time.
    b.onResolve({ filter: /^[^./]/ }, (args) => ({ path: args.path, external: true }));
    b.onLoad({ filter: /\.ts$/ }, (args) => ({
      contents: readFileSync(args.path, "utf8").replaceAll(
        "import.meta.url",
        JSON.stringify(pathToFileURL(args.path).href),
      ),
      loader: "ts",
    }));
  },
};

let bundle: Promise<string> | undefined;

/**
 * Directory holding imgpatch.js (the bin) and main-job.js (`npm start`), with their chunks. Keyed
 * once per test process: hashing every source again for each spawn would be wasted work.
 */
export function binBundle(): Promise<string> {
  bundle ??= makeBundle();
  bundle.catch(() => {
    bundle = undefined;
  });
  return bundle;
}

function makeBundle(): Promise<string> {
  // This file too: the way it bundles is part of what the bundle is.
  const files = [...sourceFiles(), fileURLToPath(import.meta.url)];
  return built(
    { name: "imgpatch-bundle", files, params: [`esbuild ${esbuildVersion}`, `node ${process.version}`] },
    async (out) => {
      await build({
        entryPoints: {
          imgpatch: join(PACKAGES, "cli/src/bin/imgpatch.ts"),
          "main-job": join(PACKAGES, "cli/src/main-job.ts"),
        },
        outdir: out,
        bundle: true,
        splitting: true,
        format: "esm",
        platform: "node",
        target: "node20",
        plugins: [sources],
        logLevel: "warning",
      });
    },
  );
}
