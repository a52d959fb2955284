/** One package as the solver sees it, whether from a repository's primary or the guest's rpmdb. */
import type { Dep } from "./dep.js";
import type { Checksum } from "./repo-source.js";
import { type Evr, formatEvr } from "./rpmvercmp.js";

export interface PackageMeta {
  name: string;
  arch: string;
  evr: Evr;
  provides: Dep[];
  requires: Dep[];
  conflicts: Dep[];
  obsoletes: Dep[];
  recommends: Dep[];
  suggests: Dep[];
  supplements: Dep[];
  enhances: Dep[];
  /** Files the metadata lists (primary's subset, filelists' full list, or the rpmdb's). */
  files: string[];
  /** Repository id, or "@System" for the guest's installed packages. */
  repo: string;
  /** Path of the .rpm inside the repository (repository packages only). */
  location: string;
  /** The package file's checksum (its pkgid). */
  checksum: Checksum | null;
  /** Size of the .rpm in bytes, or 0 when unknown. */
  size: number;
}

/** PackageMeta's dependency lists, in primary.xml's order (also primary_db's table names). */
export const DEP_LISTS = [
  "provides",
  "requires",
  "conflicts",
  "obsoletes",
  "recommends",
  "suggests",
  "supplements",
  "enhances",
] as const;

export function emptyPackage(repo: string): PackageMeta {
  return {
    name: "",
    arch: "",
    evr: { epoch: "", version: "", release: "" },
    provides: [],
    requires: [],
    conflicts: [],
    obsoletes: [],
    recommends: [],
    suggests: [],
    supplements: [],
    enhances: [],
    files: [],
    repo,
    location: "",
    checksum: null,
    size: 0,
  };
}

/** name-[epoch:]version-release.arch as dnf prints it. */
export function nevra(p: PackageMeta): string {
  return `${p.name}-${formatEvr(p.evr)}.${p.arch}`;
}

/** name-version-release.arch, as `rpm -qa` prints it. */
export function nvra(p: PackageMeta): string {
  return `${p.name}-${p.evr.version}-${p.evr.release}.${p.arch}`;
}
