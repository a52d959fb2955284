/** The solver cases checked against dnf (solver-oracle.test.ts) and reused by other tests. */
import type { SpecPkg } from "./repo-builder.js";

export interface Case {
  name: string;
  repo: SpecPkg[];
  /** A second repository (id "r2"). */
  repo2?: SpecPkg[];
  priority?: [number, number];
  cost?: [number, number];
  installed?: SpecPkg[];
  request: string[];
  /** dnf upgrades/replaces installed packages here; we must refuse naming the package. */
  weRefuse?: RegExp;
}

const p = (name: string, more: Partial<SpecPkg> = {}): SpecPkg => ({ name, ...more });

export const CASES: Case[] = [
  { name: "chain", repo: [p("a", { requires: ["b"] }), p("b", { requires: ["c"] }), p("c")], request: ["a"] },
  {
    name: "versioned requires",
    repo: [
      p("a", { requires: ["b < 2", "c >= 1.5"] }),
      p("b", { version: "1.0" }),
      p("b", { version: "2.0" }),
      p("c", { version: "1.4" }),
      p("c", { version: "1.10" }),
    ],
    request: ["a"],
  },
  {
    name: "epoch, tilde and caret",
    repo: [
      p("a", { requires: ["b >= 1:0.5", "c > 2.0~rc1", "d >= 1.0^git1"] }),
      p("b", { version: "3.0" }),
      p("b", { version: "0.5", epoch: 1 }),
      p("c", { version: "2.0~rc2" }),
      p("c", { version: "2.0~rc1" }),
      p("d", { version: "1.0^git2" }),
      p("d", { version: "1.0" }),
    ],
    request: ["a"],
  },
  {
    name: "virtual provides, several providers",
    repo: [
      p("app", { requires: ["mta", "webserver >= 2"] }),
      p("postfix", { provides: ["mta"] }),
      p("exim", { provides: ["mta"] }),
      p("nginx", { provides: ["webserver = 1"] }),
      p("httpd", { provides: ["webserver = 2"] }),
    ],
    request: ["app"],
  },
  {
    name: "file provides (primary and filelists)",
    repo: [
      p("a", { requires: ["/usr/bin/tool", "/usr/share/data/file.txt", "/etc/thing.conf"] }),
      p("tools", { files: ["/usr/bin/tool"] }),
      p("data", { files: ["/usr/share/data/file.txt"] }),
      p("thing", { config: ["/etc/thing.conf"] }),
    ],
    request: ["a"],
  },
  {
    name: "rich: or, and, with, without",
    repo: [
      p("a", { requires: ["(b or c)", "(d and e)", "(lib with lib-feature)", "(z without z-broken)"] }),
      p("b"),
      p("c"),
      p("d"),
      p("e"),
      p("lib1", { provides: ["lib"] }),
      p("lib2", { provides: ["lib", "lib-feature"] }),
      p("z1", { provides: ["z", "z-broken"] }),
      p("z2", { provides: ["z"] }),
    ],
    request: ["a"],
  },
  {
    name: "rich: if/else and unless",
    repo: [
      p("a", { requires: ["b", "(c if b else d)", "(e if missing-thing else f)"] }),
      p("g", { conflicts: ["(h unless q)"] }),
      p("b"),
      p("c"),
      p("d"),
      p("e"),
      p("f"),
      p("h"),
      p("q"),
    ],
    request: ["a", "g"],
  },
  {
    name: "obsoletes: requested name replaced by its obsoleter",
    repo: [p("old"), p("new", { obsoletes: ["old < 2"], provides: ["old = 2"] })],
    request: ["old"],
  },
  {
    name: "obsoletes among candidates",
    repo: [
      p("a", { requires: ["svc"] }),
      p("svc-a", { provides: ["svc"] }),
      p("svc-b", { provides: ["svc"], obsoletes: ["svc-a"] }),
    ],
    request: ["a"],
  },
  {
    name: "conflicts steer the choice",
    repo: [p("a", { requires: ["(b or c)", "d"] }), p("b", { conflicts: ["d"] }), p("c"), p("d")],
    request: ["a"],
  },
  {
    name: "conflict with an installed package steers the choice",
    repo: [
      p("a", { requires: ["impl"] }),
      p("impl-a", { provides: ["impl"], conflicts: ["base"] }),
      p("impl-b", { provides: ["impl"] }),
    ],
    installed: [p("base")],
    request: ["a"],
  },
  {
    name: "recommends and supplements",
    repo: [
      p("a", { recommends: ["r1", "r-missing"], requires: ["b"] }),
      p("b"),
      p("r1", { requires: ["r1-dep"] }),
      p("r1-dep"),
      p("lang-b", { supplements: ["b"] }),
      p("lang-x", { supplements: ["x"] }),
      p("x"),
    ],
    request: ["a"],
  },
  {
    name: "a recommended package that cannot be installed is skipped",
    repo: [p("a", { recommends: ["r"] }), p("r", { requires: ["nothing-provides-this"] })],
    request: ["a"],
  },
  {
    name: "installed packages satisfy",
    repo: [
      p("a", { requires: ["b >= 1", "libc"] }),
      p("b", { version: "1.0" }),
      p("libc-new", { provides: ["libc"] }),
    ],
    installed: [p("b", { version: "1.0" }), p("glibc", { provides: ["libc"] })],
    request: ["a"],
  },
  {
    name: "already installed",
    repo: [p("a", { version: "2.0" })],
    installed: [p("a", { version: "1.0" })],
    request: ["a"],
  },
  {
    name: "unsatisfiable: nothing provides",
    repo: [
      p("a", { requires: ["b"] }),
      p("b", { requires: ["missing >= 3"] }),
      p("missing", { version: "2" }),
    ],
    request: ["a"],
  },
  {
    name: "unsatisfiable: conflict with installed",
    repo: [p("a", { conflicts: ["base"] })],
    installed: [p("base")],
    request: ["a"],
  },
  {
    name: "dependency loop",
    repo: [p("a", { requires: ["b"] }), p("b", { requires: ["c"] }), p("c", { requires: ["a"] })],
    request: ["a"],
  },
  {
    name: "needs an installed package upgraded",
    repo: [p("a", { requires: ["b >= 2"] }), p("b", { version: "2.0" })],
    installed: [p("b", { version: "1.0" })],
    request: ["a"],
    weRefuse: /b-2\.0-1\.noarch would upgrade the installed b-1\.0-1\.noarch/,
  },
  {
    name: "basearch and noarch, foreign arch ignored",
    repo: [
      p("a", { requires: ["lib"], arch: "x86_64" }),
      p("lib", { arch: "x86_64", version: "1" }),
      p("lib", { arch: "aarch64", version: "2" }),
      p("tool", { arch: "noarch", requires: ["a"] }),
    ],
    request: ["tool"],
  },
  {
    name: "repository priority and cost",
    repo: [p("a", { requires: ["b", "c"] }), p("b", { version: "2" }), p("c", { version: "1" })],
    repo2: [p("b", { version: "1" }), p("c", { version: "1" })],
    priority: [50, 10],
    cost: [1000, 500],
    request: ["a"],
  },
];
