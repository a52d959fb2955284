/**
 * The command table of commands/cli.ts names every command module without importing it: its
 * `command` and `describe` must be the modules' own, and `--help` (which loads none of them) lists
 * every command; a command's own --help and a bad command line still work through the lazy load.
 */
import { describe, expect, it } from "vitest";
import { COMMANDS, runCli } from "../src/commands/main.js";

function capture() {
  let out = "";
  let err = "";
  return {
    io: {
      out: (t: string) => {
        out += t;
      },
      err: (t: string) => {
        err += t;
      },
      env: {},
    },
    get out() {
      return out;
    },
    get err() {
      return err;
    },
  };
}

describe("the lazily loaded command table", () => {
  it("repeats each module's command and description", async () => {
    expect(COMMANDS.length).toBe(15);
    for (const c of COMMANDS) {
      const spec = await c.load();
      expect({ command: spec.command, describe: spec.describe }).toEqual({
        command: c.command,
        describe: c.describe,
      });
    }
  });

  it("--help lists every command; a command's --help shows its options", async () => {
    const top = capture();
    expect(await runCli(["--help"], top.io)).toBe(0);
    for (const c of COMMANDS) expect(top.out).toContain(`imgpatch ${c.command}`);
    const ls = capture();
    expect(await runCli(["ls", "--help"], ls.io)).toBe(0);
    expect(ls.out).toMatch(/--allow-backing/);
    expect(ls.out).toMatch(/long listing/);
  });

  it("a bad command line is a usage error (exit 2)", async () => {
    const r = capture();
    expect(await runCli(["ls"], r.io)).toBe(2);
    expect(r.err).toMatch(/^imgpatch: Not enough non-option arguments/m);
    const u = capture();
    expect(await runCli(["no-such-command", "x"], u.io)).toBe(2);
    expect(u.err).toMatch(/imgpatch --help/);
  });
});
