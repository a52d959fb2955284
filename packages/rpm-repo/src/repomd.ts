/**
 * repomd.xml: the index of a repository's metadata files.
 *
 *   <repomd><revision/>
 *     <data type="primary">            one per metadata file: primary, filelists, other,
 *       <checksum type="sha256">…</checksum>   primary_db, modules, group, updateinfo, …
 *       <open-checksum type="sha256">…</open-checksum>   (of the decompressed bytes)
 *       <location href="repodata/…-primary.xml.gz"/>
 *       <timestamp/> <size/> <open-size/>
 *     </data> …
 *   </repomd>
 */

import { RepoFormatError, RepoLimitError } from "./errors.js";
import { type Checksum, type RepoSource, readAll } from "./repo-source.js";
import { parseXml } from "./xml.js";

export interface RepomdEntry {
  type: string;
  href: string;
  checksum: Checksum | null;
  openChecksum: Checksum | null;
  size: number | null;
}

export interface Repomd {
  revision: string;
  data: Map<string, RepomdEntry>;
}

const MAX_REPOMD_BYTES = 16 * 1024 * 1024;
const MAX_ENTRIES = 10_000;

export async function parseRepomd(bytes: Uint8Array, where = "repomd.xml"): Promise<Repomd> {
  const data = new Map<string, RepomdEntry>();
  let revision = "";
  let cur: RepomdEntry | null = null;
  let field: "checksum" | "open-checksum" | "revision" | "size" | null = null;
  let fieldType = "";
  let text = "";
  let sawRoot = false;
  await parseXml(
    (async function* () {
      yield bytes;
    })(),
    {
      open(name, a) {
        if (!sawRoot) {
          if (name !== "repomd")
            throw new RepoFormatError(`root element <${name}>, not <repomd>`, { file: where });
          sawRoot = true;
          return;
        }
        text = "";
        if (name === "data") {
          if (a.type === undefined || a.type === "")
            throw new RepoFormatError("<data> without type", { file: where });
          if (data.size >= MAX_ENTRIES)
            throw new RepoLimitError(`more than ${MAX_ENTRIES} <data> entries`, { file: where });
          cur = { type: a.type, href: "", checksum: null, openChecksum: null, size: null };
        } else if (cur !== null && name === "location") {
          cur.href = a.href ?? "";
        } else if (cur !== null && (name === "checksum" || name === "open-checksum" || name === "size")) {
          field = name;
          fieldType = a.type ?? "";
        } else if (cur === null && name === "revision") {
          field = "revision";
        }
      },
      text(t) {
        if (field !== null) text += t;
      },
      close(name) {
        if (name === "data" && cur !== null) {
          if (cur.href === "")
            throw new RepoFormatError(`<data type="${cur.type}"> without location`, { file: where });
          data.set(cur.type, cur);
          cur = null;
        } else if (field !== null && name === field) {
          const v = text.trim();
          if (field === "revision") revision = v;
          else if (cur !== null && field === "size") {
            if (!/^\d{1,15}$/.test(v))
              throw new RepoFormatError(`bad size "${v.slice(0, 40)}"`, { file: where });
            cur.size = Number(v);
          } else if (cur !== null) {
            if (!/^[0-9a-fA-F]{16,128}$/.test(v) || fieldType === "") {
              throw new RepoFormatError(`bad ${field} "${v.slice(0, 140)}"`, { file: where });
            }
            const c = { type: fieldType, value: v.toLowerCase() };
            if (field === "checksum") cur.checksum = c;
            else cur.openChecksum = c;
          }
          field = null;
        }
      },
    },
    where,
    { maxText: 1 << 20, maxDepth: 16, maxBytes: MAX_REPOMD_BYTES },
  );
  if (!data.has("primary") && !data.has("primary_db")) {
    throw new RepoFormatError("repomd.xml lists no primary metadata", { file: where });
  }
  return { revision, data };
}

/** Read and parse `repodata/repomd.xml` of a repository. */
export async function readRepomd(src: RepoSource): Promise<Repomd> {
  const where = src.locate("repodata/repomd.xml");
  return parseRepomd(await readAll(src.open("repodata/repomd.xml"), MAX_REPOMD_BYTES, where), where);
}
