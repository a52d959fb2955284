// The metadata tokenizer against saxes (a conforming streaming XML parser we did not write): the
// same events for well-formed documents however the bytes are split, and a RepoFormatError for
// what saxes rejects.
import { SaxesParser } from "saxes";
import { describe, expect, it } from "vitest";
import { RepoFormatError } from "../src/errors.js";
import { parseXml } from "../src/xml.js";

function saxesEvents(doc: string): string[] {
  const out: string[] = [];
  const p = new SaxesParser({ xmlns: false });
  let text = "";
  const flush = () => {
    if (text !== "") out.push(`T${text}`);
    text = "";
  };
  p.on("opentag", (t) => {
    flush();
    const a = t.attributes as Record<string, string>;
    out.push(
      `O${t.name} ${JSON.stringify(
        Object.keys(a)
          .sort()
          .map((k) => [k, a[k]]),
      )}`,
    );
  });
  p.on("closetag", (t) => {
    flush();
    out.push(`C${t.name}`);
  });
  p.on("text", (t) => {
    if (out.length > 0) text += t;
  });
  p.on("cdata", (t) => {
    text += t;
  });
  p.on("error", (e) => {
    throw e;
  });
  p.write(doc).close();
  flush();
  // Text after the root closes is whitespace; saxes reports it, we do not.
  while (out.length > 0 && out[out.length - 1]!.startsWith("T")) out.pop();
  return out;
}

async function ourEvents(bytes: Uint8Array, step: number): Promise<string[]> {
  const out: string[] = [];
  let text = "";
  const flush = () => {
    if (text !== "") out.push(`T${text}`);
    text = "";
  };
  await parseXml(
    (async function* () {
      for (let i = 0; i < bytes.length; i += step) yield bytes.subarray(i, i + step);
    })(),
    {
      open(name, a) {
        flush();
        out.push(
          `O${name} ${JSON.stringify(
            Object.keys(a)
              .sort()
              .map((k) => [k, a[k]]),
          )}`,
        );
      },
      close(name) {
        flush();
        out.push(`C${name}`);
      },
      text(t) {
        text += t;
      },
    },
    "t.xml",
  );
  return out;
}

const GOOD = [
  `<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" packages="2">\n  <package type="rpm">\n    <name>a&amp;b</name>\n    <version epoch="0" ver="1.0" rel="1"/>\n    <rpm:entry name="(x &gt;= 1 or y)" flags='GE' ver = "2"/>\n  </package>\n</metadata>\n`,
  `<!-- lead --><r a="1&#10;2&#x41;&lt;&quot;&apos;" b='it"s' c="x > y"><![CDATA[<not a tag> & ]]>t<?pi data?>u<!-- c --></r >`,
  `<r>\u00e9t\u00e9 \u{1f600} caf\u00e9<s/>\t</r>`,
  `<r x="a\tb\nc"><e:f.g-h_i/></r>`,
];

const BAD = [
  "",
  "<r>",
  "<r></s>",
  "<r><s></r></s>",
  "</r>",
  "<r/><s/>",
  "text<r/>",
  "<r/>text",
  `<r a="1" a="2"/>`,
  `<r a=1/>`,
  `<r a="<"/>`,
  "<r>&unknown;</r>",
  "<r>&#0;</r>",
  "<r>& </r>",
  `<r a="1"b="2"/>`,
  "<1r/>",
  "<r><!-- unterminated </r>",
  "<r><![CDATA[ x </r>",
];

describe("XML tokenizer (saxes as oracle)", () => {
  it("gives saxes' events for well-formed documents, split anywhere", async () => {
    let runs = 0;
    for (const doc of GOOD) {
      const want = saxesEvents(doc);
      const bytes = new TextEncoder().encode(doc);
      for (const step of [1, 2, 3, 7, 64, bytes.length]) {
        expect(await ourEvents(bytes, step), `${doc.slice(0, 30)} /${step}`).toEqual(want);
        runs++;
      }
    }
    expect(runs).toBe(GOOD.length * 6);
  });

  it("refuses what saxes refuses, with a RepoFormatError", async () => {
    for (const doc of BAD) {
      expect(() => saxesEvents(doc), doc).toThrow();
      const bytes = new TextEncoder().encode(doc);
      for (const step of [1, 5, Math.max(1, bytes.length)]) {
        await expect(ourEvents(bytes, step), `${doc} /${step}`).rejects.toBeInstanceOf(RepoFormatError);
      }
    }
  });

  it("refuses document type declarations (no entity expansion), which saxes accepts", async () => {
    const doc = "<!DOCTYPE r><r/>";
    expect(saxesEvents(doc)).toEqual(["Or []", "Cr"]);
    await expect(ourEvents(new TextEncoder().encode(doc), 3)).rejects.toThrow(/document type/);
  });
});
