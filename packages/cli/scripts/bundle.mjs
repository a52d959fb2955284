// Bundles the `imgpatch` bin into dist/bundle/ (run after `tsc -b`, from `prepare`/`build`): one
// entry file plus lazily loaded chunks, so a run compiles one module graph instead of resolving and
// linking ~140 separate ES modules. The workspace packages and yargs are inlined; dependencies that
// are CommonJS or load WebAssembly stay external and are resolved from node_modules as before.
// The entry sits two levels below the package root, like dist/commands/main.js, so the version is
// still read from ../../package.json.
import { rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const outdir = `${root}dist/bundle`;
const EXTERNAL = ["fflate", "fzstd", "seek-bzip", "tar-stream", "xxhash-wasm", "xz-decompress", "yaml"];

await rm(outdir, { recursive: true, force: true });
await build({
  entryPoints: { imgpatch: `${root}dist/bin/imgpatch.js` },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  external: EXTERNAL,
  logLevel: "warning",
  legalComments: "none",
});
