/**
 * Unpacks a set of .debs into a guest and records them in its dpkg database, in the given order
 * (the resolver orders a closure so Pre-Depends come first). The result is what `dpkg --unpack` of
 * each package leaves: files in place, conffiles as .dpkg-new, "install ok unpacked" status, info
 * files, pending triggers; the first boot's `dpkg --configure -a` configures them.
 */
import type { PkgTarget } from "@imgpatch/pkgkit";
import type { DebFile } from "./deb-file.js";
import { recordUnpacked, writeStatus } from "./dpkg-db.js";
import { DebConflictError } from "./errors.js";
import { readDpkgState } from "./status.js";
import { unpackDeb } from "./unpack.js";

export interface UnpackedPackage {
  package: string;
  version: string;
  architecture: string;
  files: number;
  bytes: number;
  /** Conffiles left as .dpkg-new for `dpkg --configure`. */
  newConffiles: string[];
  /** Maintainer scripts that will run at first boot (preinst cannot run before its unpack here). */
  deferredScripts: string[];
}

export interface UnpackReport {
  packages: UnpackedPackage[];
  /** Milliseconds spent writing files (unpack) and dpkg's database (info files, triggers, status). */
  timings: { unpackMs: number; databaseMs: number };
}

/** Unpacks and records every package; the status file is written once at the end. */
export async function unpackDebs(target: PkgTarget, debs: DebFile[]): Promise<UnpackReport> {
  const state = await readDpkgState(target);
  if (!state) {
    throw new DebConflictError(
      "the guest has no dpkg database (/var/lib/dpkg/status): not a Debian-family guest",
      {
        file: target.name,
      },
    );
  }
  const report: UnpackReport = { packages: [], timings: { unpackMs: 0, databaseMs: 0 } };
  for (const deb of debs) {
    const t0 = performance.now();
    const unpacked = await unpackDeb(deb, target, state);
    const t1 = performance.now();
    await recordUnpacked(target, state, deb, unpacked);
    report.timings.unpackMs += t1 - t0;
    report.timings.databaseMs += performance.now() - t1;
    report.packages.push({
      package: deb.package,
      version: deb.version,
      architecture: deb.architecture,
      files: unpacked.files,
      bytes: unpacked.bytes,
      newConffiles: unpacked.newConffiles,
      deferredScripts: ["preinst", "postinst"].filter((s) => deb.controlFiles.has(s)),
    });
  }
  const t2 = performance.now();
  await writeStatus(target, state);
  report.timings.databaseMs += performance.now() - t2;
  return report;
}
