import { describe, expect, it } from "vitest";
import { DebFormatError, formatGroup, parseRelations } from "../src/index.js";

describe("relation fields", () => {
  it("parses groups, alternatives, versions, arch qualifiers and restrictions", () => {
    const g = parseRelations(
      "libc6 (>= 2.36), python3:any (>= 3.11~) | python3-minimal, foo [amd64 arm64], bar (< 1.0),",
    );
    expect(g).toEqual([
      [{ name: "libc6", op: ">=", version: "2.36" }],
      [{ name: "python3", archQualifier: "any", op: ">=", version: "3.11~" }, { name: "python3-minimal" }],
      [{ name: "foo", archRestriction: ["amd64", "arm64"] }],
      [{ name: "bar", op: "<=", version: "1.0" }],
    ]);
    expect(g.map(formatGroup)).toEqual([
      "libc6 (>= 2.36)",
      "python3:any (>= 3.11~) | python3-minimal",
      "foo",
      "bar (<= 1.0)",
    ]);
    expect(parseRelations("a,\n b (= 1:2-3)")).toEqual([
      [{ name: "a" }],
      [{ name: "b", op: "=", version: "1:2-3" }],
    ]);
  });

  it("refuses garbage with a typed error", () => {
    for (const bad of ["Foo", "a (>= )", "a (~ 1)", "a ((>= 1))", "a b"]) {
      expect(() => parseRelations(bad, { field: "Depends" }), bad).toThrow(DebFormatError);
    }
    expect(() => parseRelations("a, ".repeat(100_000))).toThrow(DebFormatError);
  });
});
