/**
 * An installed package's header, as every rpmdb backend stores it: the header blob without its
 * 8-byte lead (magic 8e ad e8 01 + 4 reserved bytes), i.e. starting with the index count.
 */
import type { RpmHeader } from "@imgpatch/rpm-inject";
import { type Dep, depFromParts, SENSE_MASK } from "./dep.js";
import { RepoFormatError } from "./errors.js";
import { emptyPackage, type PackageMeta } from "./package-meta.js";
import { parseEvr } from "./rpmvercmp.js";

/** Dependency tag triples (name, flags, version) beyond those rpm-inject names. */
const DEP_TAGS = {
  provides: [1047, 1112, 1113],
  requires: [1049, 1048, 1050],
  conflicts: [1054, 1053, 1055],
  obsoletes: [1090, 1114, 1115],
  recommends: [5046, 5048, 5047],
  suggests: [5049, 5051, 5050],
  supplements: [5052, 5054, 5053],
  enhances: [5055, 5057, 5056],
} as const;

/** RPMSENSE_RPMLIB: rpm's own capabilities, never a package's. */
const SENSE_RPMLIB = 1 << 24;

export interface InstalledPackage extends PackageMeta {
  /** The header number (rpmdb key). */
  hnum: number;
  /** The header blob as stored (for copying into another database). */
  blob: Uint8Array;
}

const Tag = {
  NAME: 1000,
  VERSION: 1001,
  RELEASE: 1002,
  EPOCH: 1003,
  ARCH: 1022,
  OLDFILENAMES: 1027,
  DIRINDEXES: 1116,
  BASENAMES: 1117,
  DIRNAMES: 1118,
} as const;

let HeaderClass: typeof RpmHeader | null = null;

/** rpm-inject's header parser, loaded on first use (it is a large module to load at start-up). */
export async function loadHeaderParser(): Promise<void> {
  // The header module alone: the package index would load every decompressor and writer.
  HeaderClass ??= (await import("@imgpatch/rpm-inject/header")).RpmHeader;
}

/** Wrap a stored header blob in the lead RpmHeader expects (call loadHeaderParser first). */
export function headerFromBlob(blob: Uint8Array, where: string): RpmHeader {
  if (HeaderClass === null) throw new Error("headerFromBlob: loadHeaderParser() was not awaited");
  const bytes = new Uint8Array(blob.length + 8);
  bytes.set([0x8e, 0xad, 0xe8, 0x01], 0);
  bytes.set(blob, 8);
  try {
    return new HeaderClass(bytes, where, 0);
  } catch (e) {
    throw new RepoFormatError(`bad header: ${(e as Error).message}`, { file: where }, { cause: e });
  }
}

function deps(
  h: RpmHeader,
  [nameTag, flagsTag, verTag]: readonly [number, number, number],
  where: string,
): Dep[] {
  const names = h.strings(nameTag) ?? [];
  const flags = h.numbers(flagsTag) ?? [];
  const vers = h.strings(verTag) ?? [];
  const out: Dep[] = [];
  for (let i = 0; i < names.length; i++) {
    const f = flags[i] ?? 0;
    if ((f & SENSE_RPMLIB) !== 0 || names[i]!.startsWith("rpmlib(")) continue;
    const v = vers[i] ?? "";
    out.push(depFromParts(names[i]!, f & SENSE_MASK, v === "" ? null : parseEvr(v), where));
  }
  return out;
}

/** NEVRA, dependencies and file list of an installed header. */
export function installedFromBlob(hnum: number, blob: Uint8Array, where: string): InstalledPackage {
  const h = headerFromBlob(blob, where);
  const p = emptyPackage("@System");
  p.name = h.string(Tag.NAME) ?? "";
  if (p.name === "") throw new RepoFormatError(`header ${hnum} has no name`, { file: where });
  p.arch = h.string(Tag.ARCH) ?? "(none)";
  const epoch = h.number(Tag.EPOCH);
  p.evr = {
    epoch: epoch === undefined ? "" : String(epoch),
    version: h.string(Tag.VERSION) ?? "",
    release: h.string(Tag.RELEASE) ?? "",
  };
  for (const [field, tags] of Object.entries(DEP_TAGS)) {
    p[field as keyof typeof DEP_TAGS] = deps(h, tags, where);
  }
  const base = h.strings(Tag.BASENAMES);
  if (base !== undefined) {
    const dirs = h.strings(Tag.DIRNAMES) ?? [];
    const idx = h.numbers(Tag.DIRINDEXES) ?? [];
    p.files = base.map((b, i) => {
      const d = dirs[idx[i] ?? -1];
      if (d === undefined)
        throw new RepoFormatError(`header ${hnum}: file ${i} has no directory`, { file: where });
      return d + b;
    });
  } else {
    p.files = h.strings(Tag.OLDFILENAMES) ?? [];
  }
  return { ...p, hnum, blob };
}
