/**
 * One imgpatch run for bench/deb-install.ts, in its own process so the peak RSS it reports is this
 * run's: open BASE with a new qcow2 OVERLAY, plan and apply `--install PKG…` (the guest's own apt
 * sources, downloads from the cache), queue the first-boot configure script, commit. Prints one JSON
 * line with each phase's milliseconds.
 *
 *   tsx bench/deb-install-run.ts BASE OVERLAY PKG...            measured run
 *   tsx bench/deb-install-run.ts --prefetch BASE OVERLAY PKG... only fills the download cache
 */
import { applyDebPlan, createFetcher, planDebInstall } from "@imgpatch/deb";
import { debTargetFromGuestFs } from "../src/guest/deb-bridge.js";
import { addFirstbootScript } from "../src/guest/firstboot.js";
import { openGuest } from "../src/image/open-guest.js";

const args = process.argv.slice(2);
const prefetch = args[0] === "--prefetch";
const [base, overlay, ...packages] = prefetch ? args.slice(1) : args;
const t0 = performance.now();
const guest = await openGuest(base, { overlay });
const openMs = performance.now() - t0;
const target = debTargetFromGuestFs(guest.fs, base);
const plan = await planDebInstall(target, { install: packages });
if (prefetch) {
  const fetcher = createFetcher();
  for (const p of plan.entries) await fetcher.fetchVerified(p.url, p.size, p.sha256);
  await guest.close();
  console.log(JSON.stringify({ prefetched: plan.entries.length }));
} else {
  const report = await applyDebPlan(target, plan);
  await addFirstbootScript(guest.fs, "dpkg-configure", report.firstbootScript);
  const tc = performance.now();
  await guest.commit();
  const commitMs = performance.now() - tc;
  console.log(
    JSON.stringify({
      openMs,
      ...plan.timings,
      ...report.timings,
      commitMs,
      totalMs: performance.now() - t0,
      maxRssKiB: process.resourceUsage().maxRSS,
      files: report.packages.reduce((n, p) => n + p.files, 0),
      bytes: report.packages.reduce((n, p) => n + p.bytes, 0),
      packages: plan.packages.map((p) => `${p.package}=${p.version}`),
    }),
  );
}
