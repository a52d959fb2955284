import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeWithTools, runTool, tempDir } from "@imgpatch/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type Dep,
  formatDep,
  parseDep,
  rangesOverlap,
  SENSE_EQUAL,
  SENSE_GREATER,
  SENSE_LESS,
  simpleDep,
} from "../src/dep.js";
import { DepParseError } from "../src/errors.js";
import { parseEvr } from "../src/rpmvercmp.js";

const VALID = [
  "foo",
  "foo >= 1.0",
  "foo = 2:1.0-3.el9",
  "perl(Foo::Bar) >= 1.2",
  "/usr/bin/sh",
  "(a and b)",
  "(a or b or c)",
  "(a if b)",
  "(a if b else c)",
  "(a unless b)",
  "(a unless b else c)",
  "(a with b with c)",
  "(a without b)",
  "(a and (b >= 1:2-3 or perl(Foo::Bar)))",
  "((a or b) and (c if d else e))",
  "(p)",
  "(python3-foo >= 1.2 if python3 < 3.12)",
];

const INVALID = [
  "(a and b or c)",
  "(a and)",
  "(and b)",
  "(a foo b)",
  "(a and b",
  "(a if b else c else d)",
  "(a without b without c)",
  "(a with (b or c))",
  "(a >= )",
  "foo >< 1",
  "(a and b))",
];

describe("dependency strings", () => {
  it("parses simple and rich dependencies", () => {
    expect(parseDep("foo >= 1:2-3")).toEqual(
      simpleDep("foo", SENSE_GREATER | SENSE_EQUAL, parseEvr("1:2-3")),
    );
    const d = parseDep("(a and (b >= 2 or perl(Foo::Bar)))");
    expect(d).toMatchObject({ kind: "rich", op: "and" });
    expect(formatDep(d)).toBe("(a and (b >= 2 or perl(Foo::Bar)))");
    expect(parseDep("(a if b else c)")).toMatchObject({
      op: "if",
      args: [{ name: "a" }, { name: "b" }, { name: "c" }],
    });
    for (const v of VALID) expect(() => parseDep(v), v).not.toThrow();
    for (const v of INVALID) expect(() => parseDep(v), v).toThrow(DepParseError);
  });

  it("refuses absurd nesting and length with a typed error", () => {
    expect(() => parseDep("(".repeat(5000) + "a" + ")".repeat(5000))).toThrow(DepParseError);
    expect(() => parseDep("x".repeat(70_000))).toThrow(DepParseError);
  });

  it("matches version ranges as rpm does", () => {
    const e = parseEvr;
    const GE = SENSE_GREATER | SENSE_EQUAL;
    expect(rangesOverlap(SENSE_EQUAL, e("1.0-1"), GE, e("1.0"))).toBe(true);
    expect(rangesOverlap(SENSE_EQUAL, e("0.9-1"), GE, e("1.0"))).toBe(false);
    expect(rangesOverlap(SENSE_EQUAL, e("1.0-1"), SENSE_LESS, e("1.0"))).toBe(false);
    expect(rangesOverlap(SENSE_EQUAL, e("1:0.1-1"), GE, e("2.0"))).toBe(true);
    expect(rangesOverlap(0, null, GE, e("2.0"))).toBe(true);
    expect(rangesOverlap(SENSE_EQUAL, e("1.0-1"), SENSE_EQUAL, e("1.0-2"))).toBe(false);
    expect(rangesOverlap(GE, e("2"), SENSE_LESS, e("3"))).toBe(true);
    expect(rangesOverlap(SENSE_LESS, e("2"), SENSE_GREATER, e("3"))).toBe(false);
  });
});

const name = fc.constantFrom("a", "b", "python3-foo", "perl(Foo::Bar)", "/usr/bin/sh", "lib.so.6()(64bit)");
const simple = fc
  .tuple(
    name,
    fc.constantFrom("", "<", "<=", "=", ">=", ">"),
    fc.constantFrom("1", "2:1.0-3", "1.0~rc1", "3^git"),
  )
  // rpmbuild refuses a versioned file name, so paths stay unversioned.
  .map(([n, op, v]) => (op === "" || n.startsWith("/") ? n : `${n} ${op} ${v}`));
const rich: fc.Arbitrary<string> = fc
  .letrec<{ dep: string }>((tie) => ({
    dep: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      simple,
      fc
        .tuple(fc.constantFrom("and", "or"), fc.array(tie("dep"), { minLength: 2, maxLength: 3 }))
        .map(([op, xs]) => `(${xs.join(` ${op} `)})`),
      fc.array(simple, { minLength: 2, maxLength: 3 }).map((xs) => `(${xs.join(" with ")})`),
      fc.tuple(simple, simple).map(([a, b]) => `(${a} without ${b})`),
      fc
        .tuple(fc.constantFrom("if", "unless"), tie("dep"), tie("dep"), fc.option(tie("dep")))
        .map(([op, a, b, c]) => (c === null ? `(${a} ${op} ${b})` : `(${a} ${op} ${b} else ${c})`)),
    ),
  }))
  .dep.filter((s) => s.startsWith("("));

it("round-trips generated rich dependencies", () => {
  fc.assert(
    fc.property(rich, (s) => {
      const d: Dep = parseDep(s);
      expect(formatDep(parseDep(formatDep(d)))).toBe(formatDep(d));
    }),
    { numRuns: 2000, seed: 16 },
  );
});

describeWithTools(["rpmspec"], "dependency parsing against rpmspec", () => {
  it("accepts what rpm accepts, prints it as rpm does, and refuses what rpm refuses", async () => {
    const dir = await tempDir("dep-");
    const spec = (req: string) =>
      `Name: t\nVersion: 1\nRelease: 1\nSummary: t\nLicense: MIT\nRequires: ${req}\n%description\nt\n`;
    const f = join(dir, "t.spec");
    const cases = [
      ...VALID.filter((v) => v.startsWith("(")),
      ...fc.sample(rich, { numRuns: 150, seed: 1616 }),
    ];
    let compared = 0;
    for (const c of cases) {
      writeFileSync(f, spec(c));
      const r = await runTool("rpmspec", ["-q", "--qf", "[%{REQUIRENAME}\\n]", f]);
      // rpmbuild also applies per-tag context rules ("unless"/"if" polarity in Requires) that
      // metadata parsing does not; those refusals say "Illegal context".
      if (r.stderr.includes("Illegal context")) continue;
      expect(r.exitCode, `${c}: ${r.stderr}`).toBe(0);
      expect(parseDep(r.stdout.toString().trim())).toEqual(parseDep(c));
      compared++;
    }
    expect(compared).toBeGreaterThan(60);
    for (const bad of INVALID.filter((v) => v.startsWith("(") && !v.endsWith("))"))) {
      writeFileSync(f, spec(bad));
      const b = await runTool("rpmspec", ["-q", "--requires", f]);
      expect(b.exitCode, bad).not.toBe(0);
    }
  });
});
