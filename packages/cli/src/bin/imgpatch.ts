#!/usr/bin/env node
/**
 * The `imgpatch` bin, kept tiny: `imgpatch --version` is answered here from package.json (two levels
 * up from both src/bin and dist/bundle), and only every other command line loads the CLI (yargs,
 * then the module of the command named) — for --version that load was most of the process's run
 * time. The bundle (scripts/bundle.mjs) keeps each dynamic import as a separate chunk.
 */
import { readFileSync } from "node:fs";

const argv = process.argv.slice(2);
if (argv.length === 1 && argv[0] === "--version") {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  process.stdout.write(`${pkg.version}\n`);
} else {
  const { runCli } = await import("../commands/cli.js");
  process.exitCode = await runCli(argv);
}
