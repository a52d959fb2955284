/**
 * A synthetic repository for the benchmark: N packages in layers (each requiring 0–3 packages of
 * the layer below by a capability, a soname, a file or an `or` of two), some with two versions, some
 * recommending others; primary.xml.gz + filelists.xml.gz + repomd.xml with their checksums.
 */
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export function makeSyntheticRepo(dir: string, n: number, seed = 16): { top: string[] } {
  const r = rng(seed);
  const layers = 20;
  const per = Math.ceil(n / layers);
  const name = (i: number) => `bench-${String(i).padStart(5, "0")}`;
  const prim: string[] = [];
  const fl: string[] = [];
  let count = 0;
  for (let i = 0; i < n; i++) {
    const layer = Math.floor(i / per);
    const below = (): number => Math.max(0, (layer - 1) * per) + Math.floor(r() * per);
    const versions = r() < 0.1 ? ["1.0", "1.1"] : ["1.0"];
    const arch = r() < 0.7 ? "x86_64" : "noarch";
    const reqs: string[] = [];
    if (layer > 0) {
      const k = r();
      const nreq = k < 0.35 ? 0 : k < 0.7 ? 1 : k < 0.9 ? 2 : 3;
      for (let q = 0; q < nreq; q++) {
        const j = below();
        const kind = r();
        if (kind < 0.4) reqs.push(`<rpm:entry name="${name(j)}" flags="GE" epoch="0" ver="1.0"/>`);
        else if (kind < 0.6) reqs.push(`<rpm:entry name="libbench${j}.so.1()(64bit)"/>`);
        else if (kind < 0.75) reqs.push(`<rpm:entry name="cap(${name(j)})"/>`);
        else if (kind < 0.85) reqs.push(`<rpm:entry name="/usr/bin/${name(j)}"/>`);
        else reqs.push(`<rpm:entry name="${esc(`(${name(j)} or ${name(below())})`)}"/>`);
      }
    }
    const recs = layer > 0 && r() < 0.05 ? [`<rpm:entry name="${name(below())}"/>`] : [];
    for (const v of versions) {
      count++;
      const pkgid = createHash("sha256")
        .update(`${name(i)}-${v}`)
        .digest("hex");
      const files = [`/usr/bin/${name(i)}`, `/usr/share/doc/${name(i)}/README`];
      prim.push(
        `<package type="rpm"><name>${name(i)}</name><arch>${arch}</arch><version epoch="0" ver="${v}" rel="1.el9"/>` +
          `<checksum type="sha256" pkgid="YES">${pkgid}</checksum><summary>bench</summary><description>bench</description>` +
          `<packager/><url/><time file="1" build="1"/><size package="6000" installed="100" archive="400"/>` +
          `<location href="Packages/${name(i)}-${v}-1.el9.${arch}.rpm"/><format><rpm:license>MIT</rpm:license>` +
          `<rpm:provides><rpm:entry name="${name(i)}" flags="EQ" epoch="0" ver="${v}" rel="1.el9"/>` +
          `<rpm:entry name="libbench${i}.so.1()(64bit)"/><rpm:entry name="cap(${name(i)})" flags="EQ" epoch="0" ver="${v}"/></rpm:provides>` +
          (reqs.length > 0 ? `<rpm:requires>${reqs.join("")}</rpm:requires>` : "") +
          (recs.length > 0 ? `<rpm:recommends>${recs.join("")}</rpm:recommends>` : "") +
          `<file>/usr/bin/${name(i)}</file></format></package>`,
      );
      fl.push(
        `<package pkgid="${pkgid}" name="${name(i)}" arch="${arch}"><version epoch="0" ver="${v}" rel="1.el9"/>` +
          files.map((f) => `<file>${f}</file>`).join("") +
          "</package>",
      );
    }
  }
  const primary = `<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="${count}">\n${prim.join("\n")}\n</metadata>\n`;
  const filelists = `<?xml version="1.0" encoding="UTF-8"?>\n<filelists xmlns="http://linux.duke.edu/metadata/filelists" packages="${count}">\n${fl.join("\n")}\n</filelists>\n`;
  mkdirSync(join(dir, "repodata"), { recursive: true });
  const entries: string[] = [];
  for (const [type, text] of [
    ["primary", primary],
    ["filelists", filelists],
  ] as const) {
    const raw = Buffer.from(text);
    const gz = gzipSync(raw);
    const sum = createHash("sha256").update(gz).digest("hex");
    const open = createHash("sha256").update(raw).digest("hex");
    const href = `repodata/${sum}-${type}.xml.gz`;
    writeFileSync(join(dir, href), gz);
    entries.push(
      `<data type="${type}"><checksum type="sha256">${sum}</checksum><open-checksum type="sha256">${open}</open-checksum>` +
        `<location href="${href}"/><timestamp>1</timestamp><size>${gz.length}</size><open-size>${raw.length}</open-size></data>`,
    );
  }
  writeFileSync(
    join(dir, "repodata/repomd.xml"),
    `<?xml version="1.0" encoding="UTF-8"?>\n<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm"><revision>1</revision>${entries.join("")}</repomd>\n`,
  );
  return { top: Array.from({ length: 10 }, (_, k) => name(n - 1 - k * 37)) };
}
