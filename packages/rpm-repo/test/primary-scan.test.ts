// The byte scanner for primary.xml against saxes (a conforming XML parser we did not write): random
// primaries with entities, non-ASCII text, comments, CDATA, single quotes, whitespace inside tags
// and unknown elements give the same packages however the bytes are split; damaged copies give
// typed errors (or, when still well-formed, the packages saxes sees).
import { SaxesParser } from "saxes";
import { describe, expect, it } from "vitest";
import { formatDep, parseDep, simpleDep } from "../src/dep.js";
import { RepoFormatError } from "../src/errors.js";
import { DEP_LISTS } from "../src/package-meta.js";
import { parsePrimaryXml } from "../src/primary.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const FLAGS: Record<string, number> = { LT: 2, LE: 10, EQ: 8, GE: 12, GT: 4 };
const LISTS: readonly string[] = DEP_LISTS;

/** What a package reduces to for comparison: every field the solver reads. */
function summary(p: {
  name: string;
  arch: string;
  evr: { epoch: string; version: string; release: string };
  location: string;
  size: number;
  checksum: { type: string; value: string } | null;
  files: string[];
  [k: string]: unknown;
}): string {
  const deps = LISTS.map(
    (l) =>
      `${l}:${(p[l] as Parameters<typeof formatDep>[0][]).map((d) => `${formatDep(d)}|${d.kind === "simple" ? JSON.stringify(d.evr) : ""}`).join(";")}`,
  );
  return JSON.stringify([p.name, p.arch, p.evr, p.location, p.size, p.checksum, p.files, deps]);
}

/** The reference: saxes events folded into packages the way primary.ts describes them. */
function saxesPackages(doc: string): string[] {
  const out: string[] = [];
  const parser = new SaxesParser({ xmlns: false });
  type P = Parameters<typeof summary>[0];
  let p: P | null = null;
  let list: unknown[] | null = null;
  let field: string | null = null;
  let text = "";
  let ctype = "";
  parser.on("opentag", (t) => {
    const a = t.attributes as Record<string, string>;
    if (t.name === "package") {
      p = {
        name: "",
        arch: "",
        evr: { epoch: "", version: "", release: "" },
        location: "",
        size: 0,
        checksum: null,
        files: [],
      };
      for (const l of LISTS) p[l] = [];
      return;
    }
    if (p === null) return;
    if (["name", "arch", "file", "checksum"].includes(t.name)) {
      field = t.name;
      text = "";
      ctype = a.type ?? "";
    } else if (t.name === "version") p.evr = { epoch: a.epoch ?? "", version: a.ver!, release: a.rel ?? "" };
    else if (t.name === "location") p.location = a.href ?? "";
    else if (t.name === "size") p.size = /^\d{1,15}$/.test(a.package ?? "") ? Number(a.package) : 0;
    else if (t.name.startsWith("rpm:") && LISTS.includes(t.name.slice(4)))
      list = p[t.name.slice(4)] as unknown[];
    else if (t.name === "rpm:entry" && list !== null && !a.name!.startsWith("rpmlib(")) {
      const evr = a.ver === undefined ? null : { epoch: a.epoch ?? "", version: a.ver, release: a.rel ?? "" };
      list.push(
        a.name!.startsWith("(") ? parseDep(a.name!) : simpleDep(a.name!, a.flags ? FLAGS[a.flags]! : 0, evr),
      );
    }
  });
  parser.on("text", (t) => {
    text += t;
  });
  parser.on("cdata", (t) => {
    text += t;
  });
  parser.on("closetag", (t) => {
    if (p === null) return;
    if (t.name === "package") {
      out.push(summary(p));
      p = null;
    } else if (t.name === field) {
      const v = text.trim();
      if (field === "name") p.name = v;
      else if (field === "arch") p.arch = v;
      else if (field === "file") p.files.push(v);
      else p.checksum = { type: ctype, value: v.toLowerCase() };
      field = null;
    } else if (t.name.startsWith("rpm:") && LISTS.includes(t.name.slice(4))) list = null;
  });
  parser.on("error", (e) => {
    throw e;
  });
  parser.write(doc).close();
  return out;
}

async function ours(bytes: Uint8Array, split: () => number): Promise<string[]> {
  const out: string[] = [];
  await parsePrimaryXml(
    (async function* () {
      for (let i = 0; i < bytes.length; ) {
        const n = 1 + Math.floor(split());
        yield bytes.subarray(i, i + n);
        i += n;
      }
    })(),
    "t",
    "primary.xml",
    (p) => out.push(summary(p as unknown as Parameters<typeof summary>[0])),
  );
  return out;
}

function randomPrimary(r: () => number): string {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const word = () =>
    pick([
      "lib",
      "py",
      "perl(Foo::Bar)",
      "caf\u00e9",
      "\u4e2d\u6587",
      "a&amp;b",
      "x&#x41;y",
      "q&lt;r",
      "tool",
    ]);
  const sp = () => pick(["", " ", "\n  ", "\t"]);
  const q = (v: string) => (r() < 0.3 ? `'${v.replace(/'/g, "&apos;")}'` : `"${v}"`);
  const evrAttrs = () =>
    `${r() < 0.7 ? ` epoch=${q(pick(["0", "1"]))}` : ""} ver=${q(pick(["1.0", "2", "1.0~rc1", "3^git"]))}${r() < 0.6 ? ` rel=${q(pick(["1", "1.el9", "2"]))}` : ""}`;
  const entry = () => {
    if (r() < 0.1) return `<rpm:entry name="rpmlib(PayloadIsZstd)" flags="LE" ver="5.4"/>`;
    if (r() < 0.1) return `<rpm:entry name="(${word()} &gt;= 1 or ${word()})"${sp()}/>`;
    const name = r() < 0.2 ? `/usr/bin/${word()}` : word();
    return r() < 0.5
      ? `<rpm:entry${sp()} name=${q(name)}${sp()}/>`
      : `<rpm:entry name=${q(name)} flags=${q(pick(Object.keys(FLAGS)))}${evrAttrs()}${sp()}/>`;
  };
  const pkgs: string[] = [];
  const n = 1 + Math.floor(r() * 12);
  for (let i = 0; i < n; i++) {
    const name = `${word()}${i}`;
    const lists = LISTS.filter(() => r() < 0.4).map(
      (l) => `<rpm:${l}>${Array.from({ length: Math.floor(r() * 4) }, entry).join(sp())}</rpm:${l}>`,
    );
    const nameText = r() < 0.15 ? `<![CDATA[${name.replace(/&/g, "+")}]]>` : name;
    const files = Array.from(
      { length: Math.floor(r() * 3) },
      () => `<file${r() < 0.3 ? ' type="dir"' : ""}>/etc/${word()}</file>`,
    );
    pkgs.push(
      `<package type="rpm">${sp()}<name>${nameText}</name><arch>${pick(["x86_64", "noarch"])}</arch>` +
        `<version${evrAttrs()}/>${r() < 0.2 ? "<!-- a </package> in a comment -->" : ""}` +
        `<checksum type="sha256" pkgid="YES">${r() < 0.5 ? "ABCDEF" : "abc123"}</checksum><summary>s &amp; t</summary>` +
        `<description>d\u00e9j\u00e0 <![CDATA[<raw>]]></description><time file='1' build="2"/>` +
        `<size package=${q(String(Math.floor(r() * 1e6)))} installed="1"/><location ${sp()}href=${q(`P/${i}.rpm`)}${sp()}/>` +
        `<format><rpm:license>MIT</rpm:license>${r() < 0.2 ? "<x:unknown><y a='1'>t</y></x:unknown>" : ""}${lists.join("")}${files.join("")}</format>` +
        `</package${sp()}>`,
    );
  }
  return `<?xml version="1.0" encoding="UTF-8"?>\n<!-- generated -->\n<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="r" packages="${n}">\n${pkgs.join("\n")}\n<?pi x?></metadata>\n`;
}

describe("primary byte scanner", () => {
  it("reads the packages saxes reads, however the bytes are split", async () => {
    const r = rng(7);
    let compared = 0;
    for (let k = 0; k < 150; k++) {
      const doc = randomPrimary(r);
      const want = saxesPackages(doc);
      const bytes = new TextEncoder().encode(doc);
      for (const max of [1, 7, 64, 1 << 20]) {
        expect(await ours(bytes, () => r() * max), `${doc}\nsplit ${max}`).toEqual(want);
        compared++;
      }
    }
    expect(compared).toBe(600);
  });

  it("gives typed errors for damaged primaries, and saxes's packages when still well-formed", async () => {
    const r = rng(11);
    let refused = 0;
    for (let k = 0; k < 300; k++) {
      const bytes = new TextEncoder().encode(randomPrimary(r));
      const cut = r() < 0.3 ? bytes.subarray(0, Math.floor(r() * bytes.length)) : new Uint8Array(bytes);
      if (cut === bytes || cut.length === bytes.length) {
        for (let m = 0; m < 3; m++) cut[Math.floor(r() * cut.length)] = Math.floor(r() * 256);
      }
      let want: string[] | null = null;
      try {
        want = saxesPackages(new TextDecoder("utf-8", { fatal: true }).decode(cut));
      } catch {
        want = null;
      }
      try {
        const got = await ours(cut, () => r() * 100);
        // Accepted: what we read must be what saxes read (it accepted the document too, apart from
        // the checks the scanner leaves out for elements it ignores).
        if (want !== null) expect(got).toEqual(want);
      } catch (e) {
        expect(e, String(e)).toBeInstanceOf(RepoFormatError);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
  });
});
