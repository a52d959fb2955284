/** `customize` steps (operations and --rpm packages) applied to an open guest. */

import type { DebStepOptions } from "../customize/install-deb.js";
import { applyOperation, type CustomizeContext } from "../customize/operations.js";
import type { Guest } from "../image/open-guest.js";
import type { Step } from "./recipe.js";

// Loaded on first use: most runs need neither rpm-inject, the elements engine nor xxhash (start-up time).
export const rpmInject = () => import("@imgpatch/rpm-inject");
export const rpmBridge = () => import("../guest/rpm-bridge.js");

/** Bytes of the regular files of a payload (what a progress bar counts). */
export function payloadBytes(files: ReadonlyArray<{ type: string; size: number; ghost?: boolean }>): number {
  let n = 0;
  for (const f of files) if (f.type === "file" && !f.ghost) n += f.size;
  return n;
}

/** Runs `customize` steps on an open guest; returns per-step change lines. */
export interface StepContext extends CustomizeContext {
  /** --rpm-owner-fallback: owners missing from the guest → root now, chowned at first boot after %pre. */
  rpmMissingOwner?: "error" | "root";
  /** --repo values for --install on RPM guests (base URLs). */
  repos?: string[];
  /** --repo, --no-install-recommends, --allow-unauthenticated for --install/--deb on Debian guests. */
  deb?: DebStepOptions;
}

export async function runSteps(
  guest: Guest,
  steps: readonly Step[],
  ctx: StepContext,
  onStep?: (step: Step, lines: string[]) => void,
): Promise<Array<{ step: Step; changes: string[] }>> {
  const done: Array<{ step: Step; changes: string[] }> = [];
  // Like virt-customize, --password-crypto applies to every password operation wherever it stands.
  for (const step of steps) if (step.op === "password-crypto") ctx.passwordCrypto = step.method;
  for (const step of steps) {
    let lines: string[];
    if (step.op === "rpm") {
      const { injectRpms, readRpm } = await rpmInject();
      const { injectTargetFromGuestFs, queueFirstbootPlan } = await rpmBridge();
      const pkg = await readRpm(step.host);
      const bar = ctx.progress?.(`rpm ${pkg.info.name}`);
      try {
        const total = payloadBytes(pkg.files);
        let done = 0;
        bar?.update(0, total);
        const onWritten = (n: number) => {
          done += n;
          bar?.update(done, total);
        };
        const r = await injectRpms([pkg], injectTargetFromGuestFs(guest.fs, guest.image, onWritten), {
          missingOwner: ctx.rpmMissingOwner ?? "error",
          signature: step.signature,
          keys: step.keys,
        });
        bar?.update(total, total); // done (hard links and unchanged %config files are not rewritten)
        lines = r.reports.flatMap((rep) => [
          `installed ${rep.nevra}: ${rep.written.length} files`,
          ...rep.warnings,
        ]);
        lines.push(...(await queueFirstbootPlan(guest.fs, r.firstboot)).map((p) => `firstboot ${p}`));
      } finally {
        bar?.finish();
        await pkg.close();
      }
    } else if (step.op === "install" || step.op === "deb") {
      const { installStep } = await import("./install.js");
      lines = await installStep(guest, step, ctx);
    } else {
      lines = await applyOperation(guest.fs, step, ctx);
    }
    onStep?.(step, lines);
    done.push({ step, changes: lines });
  }
  return done;
}
