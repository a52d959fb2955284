/**
 * dpkg's version comparison against `dpkg --compare-versions` itself: fixed cases (epochs, "~",
 * letters vs punctuation, leading zeros, revisions) and fast-check generated pairs, answered by
 * one dpkg process per pair batch (a shell loop).
 */
import { describeWithTools, runTool } from "@imgpatch/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareVersions, DebFormatError, parseVersion } from "../src/index.js";

const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);

/** dpkg's answer for each pair: -1, 0, 1. */
async function dpkgCompare(pairs: [string, string][]): Promise<number[]> {
  const script = pairs
    .map(
      ([a, b]) =>
        `if dpkg --compare-versions '${a}' lt '${b}'; then echo -1; elif dpkg --compare-versions '${a}' eq '${b}'; then echo 0; else echo 1; fi`,
    )
    .join("\n");
  const r = await runTool("sh", ["-c", script], { timeoutMs: 120_000 });
  expect(r.exitCode, r.stderr.toString()).toBe(0);
  return r.stdout.toString("utf8").trim().split("\n").map(Number);
}

const FIXED: [string, string][] = [
  ["1.0", "1.0"],
  ["1.0~rc1", "1.0"],
  ["1.0~~", "1.0~"],
  ["1.0~", "1.0"],
  ["1.0", "1.0+b1"],
  ["1.0a", "1.0+"],
  ["1:0.1", "2.0"],
  ["0:1.0", "1.0"],
  ["1.01", "1.1"],
  ["1.0-1", "1.0-1ubuntu1"],
  ["1.0-1", "1.0"],
  ["2.36-9+deb12u4", "2.36-9+deb12u10"],
  ["1.2.3-a", "1.2.3-A"],
  ["10", "9"],
  ["1.0.", "1.0"],
  ["1:2.0~rc1-3", "1:2.0-1"],
  ["3.0-1-2", "3.0-1-10"],
];

describe("version parsing", () => {
  it("refuses what dpkg refuses", () => {
    for (const bad of ["", "a1.0", "1:", "x:1.0", "1.0 2", "1.0-", "1.0_1"]) {
      expect(() => parseVersion(bad), bad).toThrow(DebFormatError);
    }
    expect(parseVersion("2:1.0-3-4")).toEqual({ epoch: 2, upstream: "1.0-3", revision: "4" });
  });
});

describeWithTools(["dpkg"], "compareVersions vs dpkg --compare-versions", () => {
  it("fixed cases", async () => {
    const theirs = await dpkgCompare(FIXED);
    expect(FIXED.map(([a, b]) => sign(compareVersions(a, b)))).toEqual(theirs);
  });

  it("generated pairs", async () => {
    const part = fc.stringMatching(/^[0-9][0-9a-zA-Z.+~]{0,6}$/);
    const rev = fc.stringMatching(/^[0-9a-zA-Z.+~]{1,5}$/);
    const version = fc
      .tuple(
        fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
        part,
        fc.option(rev, { nil: undefined }),
      )
      .map(([e, u, r]) => `${e === undefined ? "" : `${e}:`}${u}${r === undefined ? "" : `-${r}`}`);
    const pairs = fc.sample(fc.tuple(version, version), { numRuns: 300, seed: 15 });
    // Pairs sharing a prefix exercise the run-by-run comparison more than random ones.
    for (const [a] of pairs.slice(0, 100)) pairs.push([a, `${a}~`], [a, `${a}a`], [a, `${a}.0`]);
    const theirs = await dpkgCompare(pairs);
    const ours = pairs.map(([a, b]) => sign(compareVersions(a, b)));
    const diffs = pairs
      .filter((_, i) => ours[i] !== theirs[i])
      .map(([a, b], i) => `${a} vs ${b}: ${ours[i]}/${theirs[i]}`);
    expect(diffs).toEqual([]);
  });
});
