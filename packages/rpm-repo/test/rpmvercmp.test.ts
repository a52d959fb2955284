import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { evrCompare, parseEvr, rpmvercmp } from "../src/rpmvercmp.js";

// rpm's own test table (known answers), so the algorithm is checked even without rpm installed.
const KNOWN: [string, string, number][] = [
  ["1.0", "1.0", 0],
  ["1.0", "2.0", -1],
  ["2.0.1", "2.0", 1],
  ["5.5p1", "5.5p10", -1],
  ["10xyz", "10.1xyz", -1],
  ["xyz10", "xyz10.1", -1],
  ["1.0010", "1.9", 1],
  ["1.05", "1.5", 0],
  ["2a", "2.0", -1],
  ["1.0a", "1.0", 1],
  ["6.0.rc1", "6.0", 1],
  ["10b2", "10a1", 1],
  ["1.0~rc1", "1.0", -1],
  ["1.0~rc1", "1.0~rc2", -1],
  ["1.0~rc1~git123", "1.0~rc1", -1],
  ["1.0^", "1.0", 1],
  ["1.0^git1", "1.0^git2", -1],
  ["1.0^git1", "1.01", -1],
  ["1.0^20160101", "1.0.1", -1],
  ["1.0^1", "1.0~1", 1],
  ["1.0^git1~pre", "1.0^git1", -1],
  ["a+", "a_", 0],
  ["+a", "_a", 0],
  ["", "", 0],
];

it("matches rpm's known answers", () => {
  for (const [a, b, want] of KNOWN) {
    expect(rpmvercmp(a, b), `${a} vs ${b}`).toBe(want);
    expect(rpmvercmp(b, a), `${b} vs ${a}`).toBe(want === 0 ? 0 : -want);
  }
});

it("compares EVRs with epoch first and release matching for dependencies", () => {
  expect(evrCompare(parseEvr("1:1.0-1"), parseEvr("2.0-1"))).toBe(1);
  expect(evrCompare(parseEvr("0:1.0-1"), parseEvr("1.0-1"))).toBe(0);
  expect(evrCompare(parseEvr("1.0"), parseEvr("1.0-5"), true)).toBe(0);
  expect(evrCompare(parseEvr("1.0"), parseEvr("1.0-5"), false)).toBe(-1);
  expect(parseEvr("3:1.2-3.el9")).toEqual({ epoch: "3", version: "1.2", release: "3.el9" });
  expect(parseEvr("1.2")).toEqual({ epoch: "", version: "1.2", release: "" });
});

// rpm.vercmp parses its arguments as EVRs, so the strings avoid ":" and "-" and are not empty.
const versionChar = fc.constantFrom(..."0123456789abcZ.~^_+".split(""));
const version = fc.array(versionChar, { minLength: 1, maxLength: 12 }).map((a) => a.join(""));

describeWithTools(["rpm"], "rpmvercmp against rpm.vercmp", () => {
  it("agrees with rpm on 3,000 random pairs", async () => {
    const dir = await tempDir("rpmvercmp-");
    const pairs = fc.sample(fc.tuple(version, version), { numRuns: 3000, seed: 1616 });
    // Also pairs that share a prefix, where the interesting cases are.
    pairs.push(
      ...fc
        .sample(fc.tuple(version, version, version), { numRuns: 1000, seed: 16 })
        .map(([p, a, b]) => [p + a, p + b] as [string, string]),
    );
    const input = join(dir, "pairs");
    writeFileSync(input, pairs.map(([a, b]) => `${a}\t${b}`).join("\n") + "\n");
    const lua = `%{lua: for l in io.lines("${input}") do local a, b = l:match("^(.-)\\t(.*)$"); print(rpm.vercmp(a, b) .. "\\n") end}`;
    const r = await runTool("rpm", ["--eval", lua]);
    expect(r.exitCode, r.stderr).toBe(0);
    const got = r.stdout
      .toString()
      .split("\n")
      .filter((l) => l !== "")
      .map(Number);
    expect(got.length).toBe(pairs.length);
    const mismatches = pairs
      .map(([a, b], i) => ({ a, b, rpm: got[i], ours: rpmvercmp(a, b) }))
      .filter((m) => m.rpm !== m.ours);
    expect(mismatches.slice(0, 10)).toEqual([]);
  });
});
