/** `imgpatch customize`: virt-customize-style operations, in command-line order. */
import { RANDOM_PASSWORD_NOTE } from "../customize/operations.js";
import { UsageError } from "../image/open-image.js";
import type { CommandSpec, Common } from "./context.js";
import { printableStep, stepLabel } from "./formatting.js";
import { debOptionsOf, type InstallPlanReport, installPlansJson, planInstallStep } from "./install.js";
import { imageOptions, outputModeOptions, outputOptions, sourceDateEpoch, withRpmPolicy } from "./options.js";
import { progressBar, type StepProgress } from "./progress.js";
import { OPERATION_NAMES, orderedSteps, withOperationOptions } from "./recipe.js";
import { rpmBridge, rpmInject, runSteps } from "./steps.js";

function repoArg(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  return (Array.isArray(v) ? v : [v]).map(String);
}

export const customizeCommand: CommandSpec = {
  command: "customize [image]",
  describe: "apply virt-customize-style operations in command-line order",
  builder: (y) => {
    const z = outputModeOptions(imageOptions(y.positional("image", { type: "string" })))
      .option("add", {
        alias: "a",
        type: "string",
        describe: "the image (virt-customize style)",
      })
      .option("rpm-owner-fallback", {
        type: "boolean",
        describe:
          "--rpm: files owned by users/groups the guest lacks (made by %pre) go to root now, chowned at first boot",
      })
      .option("rpm-key", {
        type: "string",
        array: true,
        describe:
          "--rpm: trust this OpenPGP public key file (armored or binary; repeatable), besides the guest's /etc/pki/rpm-gpg/* and repo gpgkey=file:// keys",
      })
      .option("repo", {
        type: "string",
        array: true,
        describe:
          "--install: on Debian guests an extra apt source 'deb [options] URI SUITE COMPONENT...' besides the guest's own; on RPM guests a repository base URL (directory, file://, http(s)://) used instead of /etc/yum.repos.d (repeatable)",
      })
      .option("install-recommends", {
        type: "boolean",
        describe:
          "--install/--deb: --no-install-recommends as apt (default: the guest's APT::Install-Recommends)",
      })
      .option("allow-unauthenticated", {
        type: "boolean",
        describe:
          "--install/--deb: use apt repositories whose Release signature does not verify (warned loudly)",
      })
      .option("allow-expired", {
        type: "boolean",
        describe:
          "--install/--deb: use apt repositories whose Release is past its Valid-Until (warned loudly; the guest's Acquire::Check-Valid-Until \"false\" or a source's check-valid-until=no also do)",
      })
      .option("rpm-signature", {
        type: "string",
        choices: ["required", "if-present", "ignore"],
        describe:
          "--rpm: signature policy; if-present (default): a signed package must verify with a trusted key, unsigned ones pass; required: unsigned ones fail too",
      });
    return withOperationOptions(z, OPERATION_NAMES, "Operations (applied in command-line order):");
  },
  run: async (a, ctx) => {
    const img = (a.image ?? a.add) as string | undefined;
    if (!img) throw new UsageError("customize needs an IMAGE (positional or -a IMAGE)");
    if (a.image && a.add) throw new UsageError("give the image once (positional or -a)");
    ctx.image = img;
    const steps = withRpmPolicy(await orderedSteps(ctx.argv.slice(ctx.argv.indexOf("customize") + 1)), a);
    const common = a as unknown as Common;
    const opts = { ...outputOptions(a, ctx.env), now: sourceDateEpoch(ctx.env) };
    const dry = a["dry-run"] === true;
    if (steps.length === 0) throw new UsageError("no operations given (see imgpatch customize --help)");
    if (!dry && !opts.overlay && !opts.output && !opts.inPlace) {
      throw new UsageError(
        "customize writes an output: give --overlay OUT, -o OUT or --in-place (or --dry-run)",
        img,
      );
    }
    const now = sourceDateEpoch(ctx.env);
    if (dry) {
      await ctx.withGuest(
        img,
        { format: opts.format, mounts: opts.mounts, allowBacking: opts.allowBacking },
        async (g) => {
          const rpmPlans: Array<{ file: string; nevra: string; files: number; scriptlets: number }> = [];
          const installs: InstallPlanReport[] = [];
          for (const s of steps) {
            if (s.op === "install" || s.op === "deb")
              installs.push(
                await planInstallStep(
                  g,
                  s,
                  repoArg(a.repo),
                  debOptionsOf(a, ctx.io.err, ctx.ttyProgress(common)),
                ),
              );
          }
          for (const s of steps) {
            if (s.op !== "rpm") continue;
            const { planTransaction, readRpm } = await rpmInject();
            const { injectTargetFromGuestFs } = await rpmBridge();
            const pkg = await readRpm(s.host);
            try {
              const p = await planTransaction([pkg], injectTargetFromGuestFs(g.fs, g.image), {
                missingOwner: a["rpm-owner-fallback"] ? "root" : "error",
                signature: s.signature,
                keys: s.keys,
              });
              for (const plan of p.plans) {
                rpmPlans.push({
                  file: s.host,
                  nevra: plan.nevra,
                  files: plan.files.length,
                  scriptlets: p.firstboot.steps.length,
                });
              }
            } finally {
              await pkg.close();
            }
          }
          if (a.json)
            return ctx.emitJson({
              image: img,
              dryRun: true,
              operations: steps.map(printableStep),
              rpm: rpmPlans,
              ...installPlansJson(installs),
            });
          ctx.say(common, `dry run on ${img} (nothing is written):`);
          for (const s of steps) ctx.say(common, `  ${stepLabel(s)}`);
          for (const i of installs) for (const l of i.lines) ctx.say(common, `  ${l}`);
          for (const r of rpmPlans)
            ctx.say(
              common,
              `  rpm ${r.file}: ${r.nevra}, ${r.files} entries, ${r.scriptlets} first-boot steps`,
            );
        },
      );
      return;
    }
    ctx.progressOn = ctx.ttyProgress(common) && opts.output !== undefined;
    const result = await ctx.withGuest(img, opts, async (g) => {
      for (const w of g.warnings) if (common.verbose) ctx.io.err(`imgpatch: warning: ${img}: ${w}\n`);
      let i = 0;
      return runSteps(
        g,
        steps,
        {
          now,
          rpmMissingOwner: a["rpm-owner-fallback"] ? "root" : "error",
          repos: repoArg(a.repo),
          deb: debOptionsOf(a, ctx.io.err, ctx.ttyProgress(common)),
          progress: ctx.ttyProgress(common)
            ? (label: string): StepProgress => progressBar(true, label, ctx.io.err)
            : undefined,
        },
        (step, lines) => {
          i++;
          ctx.progress(common, `[${i}/${steps.length}] ${step.op}`);
          for (const l of lines)
            if (common.verbose || l.startsWith(RANDOM_PASSWORD_NOTE)) ctx.say(common, `  ${l}`);
        },
      );
    });
    ctx.progressDone(common);
    const out = opts.overlay ?? opts.output ?? img;
    if (a.json)
      return ctx.emitJson({
        image: img,
        output: out,
        operations: result.map((r) => ({
          ...printableStep(r.step),
          changes: r.changes,
        })),
      });
    ctx.say(common, `${img}: ${steps.length} operations applied -> ${out}`);
  },
};
