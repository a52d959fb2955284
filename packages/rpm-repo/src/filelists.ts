/**
 * filelists.xml: every file of every package. Read only when a file dependency is not answered by
 * primary's file subset, and then only the wanted paths are kept (bounded memory).
 *
 *   <filelists packages="N">
 *     <package pkgid="sha256 of the .rpm" name arch>
 *       <version epoch ver rel/>
 *       <file [type="dir|ghost"]>/path</file> …
 *     </package> …
 *   </filelists>
 */
import { RepoFormatError, RepoLimitError } from "./errors.js";
import { DEFAULT_METADATA_LIMITS, type MetadataLimits, openMetadata } from "./primary.js";
import type { Checksum, RepoSource } from "./repo-source.js";
import { DEFAULT_XML_LIMITS, parseXml } from "./xml.js";

/** pkgid → the wanted paths that package holds. */
export type FileOwners = Map<string, string[]>;

export async function parseFilelistsXml(
  xml: AsyncIterable<Uint8Array>,
  wanted: ReadonlySet<string>,
  where: string,
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
): Promise<FileOwners> {
  const owners: FileOwners = new Map();
  let pkgid: string | null = null;
  let inFile = false;
  let text = "";
  let count = 0;
  let files = 0;
  let sawRoot = false;
  await parseXml(
    xml,
    {
      open(name, a) {
        if (!sawRoot) {
          if (name !== "filelists")
            throw new RepoFormatError(`root element <${name}>, not <filelists>`, { file: where });
          sawRoot = true;
          return;
        }
        if (name === "package") {
          if (pkgid !== null) throw new RepoFormatError("<package> inside <package>", { file: where });
          if (++count > limits.maxPackages)
            throw new RepoLimitError(`more than ${limits.maxPackages} packages`, { file: where });
          if (a.pkgid === undefined || a.pkgid === "")
            throw new RepoFormatError(`package ${count} without pkgid`, { file: where });
          pkgid = a.pkgid.toLowerCase();
          files = 0;
        } else if (name === "file" && pkgid !== null) {
          if (++files > limits.maxEntries) {
            throw new RepoLimitError(`package ${pkgid}: more than ${limits.maxEntries} files`, {
              file: where,
            });
          }
          inFile = true;
          text = "";
        }
      },
      text(t) {
        if (inFile) text += t;
      },
      close(name) {
        if (name === "file" && inFile && pkgid !== null) {
          inFile = false;
          const path = text.trim();
          if (wanted.has(path)) {
            const list = owners.get(pkgid);
            if (list === undefined) owners.set(pkgid, [path]);
            else list.push(path);
          }
        } else if (name === "package") {
          pkgid = null;
        }
      },
    },
    where,
    { ...DEFAULT_XML_LIMITS, maxDepth: 16 },
  );
  return owners;
}

export async function readFilelists(
  src: RepoSource,
  href: string,
  checksum: Checksum | null,
  wanted: ReadonlySet<string>,
  limits: MetadataLimits = DEFAULT_METADATA_LIMITS,
): Promise<FileOwners> {
  const { where, data } = openMetadata(src, href, checksum, limits);
  return parseFilelistsXml(data, wanted, where, limits);
}
