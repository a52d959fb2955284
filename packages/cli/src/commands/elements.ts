/** `imgpatch elements`: bake diskimage-builder elements (and the RPM route) into an image. */
import { basename } from "node:path";
import { UsageError } from "../image/open-image.js";
import type { CommandSpec, Common } from "./context.js";
import { imageOptions, outputModeOptions, outputOptions, rpmPolicyOf, sourceDateEpoch } from "./options.js";
import { progressBar } from "./progress.js";
import { payloadBytes, rpmBridge, rpmInject } from "./steps.js";

export const elementsCommand: CommandSpec = {
  command: "elements <image> [elements..]",
  describe:
    "bake diskimage-builder elements into the image (no chroot; install phases deferred to first boot)",
  builder: (y) =>
    outputModeOptions(imageOptions(y))
      .positional("image", { type: "string", demandOption: true })
      .positional("elements", { type: "string", array: true })
      .option("rpm", {
        type: "string",
        describe:
          "the RPM route: agent packages (RDO os-collect-config, os-refresh-config, os-apply-config, python3-heat-agent*) unpacked by rpm-inject, then os-collect-config enabled (repeatable)",
      })
      .option("rpm-owner-fallback", { type: "boolean", describe: "see customize --rpm-owner-fallback" })
      .option("rpm-key", { type: "string", array: true, describe: "see customize --rpm-key" })
      .option("rpm-signature", {
        type: "string",
        choices: ["required", "if-present", "ignore"],
        describe: "see customize --rpm-signature",
      })
      .option("elements-path", {
        type: "string",
        describe: "colon-separated element directories (default $ELEMENTS_PATH)",
      })
      .option("wheels", {
        type: "string",
        describe: "host directory of wheels for the first-boot pip installs",
      })
      .option("offline", { type: "boolean", default: false, describe: "pip installs use only --wheels" })
      .option("allow-duplicate-hooks", { type: "boolean", default: false }),
  run: async (a, ctx) => {
    const img = a.image as string;
    ctx.image = img;
    const common = a as unknown as Common;
    const elements = (a.elements as string[] | undefined) ?? [];
    const rpms = a.rpm === undefined ? [] : (Array.isArray(a.rpm) ? a.rpm : [a.rpm]).map(String);
    if (elements.length === 0 && rpms.length === 0)
      throw new UsageError("give ELEMENT names or --rpm FILE", img);
    const elementsPath = (a["elements-path"] as string | undefined) ?? ctx.env.ELEMENTS_PATH;
    if (!elementsPath && elements.length > 0)
      throw new UsageError("no elements path: give --elements-path or set ELEMENTS_PATH");
    const opts = { ...outputOptions(a, ctx.env), now: sourceDateEpoch(ctx.env) };
    const dry = a["dry-run"] === true;
    if (!dry && !opts.overlay && !opts.output && !opts.inPlace) {
      throw new UsageError(
        "elements writes an output: give --overlay OUT, -o OUT or --in-place (or --dry-run)",
        img,
      );
    }
    const now = sourceDateEpoch(ctx.env);
    ctx.progressOn = ctx.ttyProgress(common) && !dry && opts.output !== undefined;
    const rpmLog: string[] = [];
    const r = await ctx.withGuest(
      img,
      dry ? { format: opts.format, mounts: opts.mounts, allowBacking: opts.allowBacking } : opts,
      async (g) => {
        if (rpms.length > 0) {
          const { injectRpms, planTransaction, readRpm } = await rpmInject();
          const { injectTargetFromGuestFs, queueFirstbootPlan } = await rpmBridge();
          const pkgs = [];
          try {
            for (const f of rpms) pkgs.push(await readRpm(f));
            const bar = progressBar(
              ctx.ttyProgress(common) && !dry,
              `rpm payloads (${pkgs.length})`,
              ctx.io.err,
            );
            const total = pkgs.reduce((n, p) => n + payloadBytes(p.files), 0);
            let done = 0;
            bar.update(0, total);
            const target = injectTargetFromGuestFs(g.fs, g.image, (n) => {
              done += n;
              bar.update(done, total);
            });
            const missingOwner = a["rpm-owner-fallback"] ? "root" : "error";
            const rpmOpts = { missingOwner, ...rpmPolicyOf(a) } as const;
            if (dry) {
              const p = await planTransaction(pkgs, target, rpmOpts);
              for (const plan of p.plans)
                rpmLog.push(`rpm: would install ${plan.nevra} (${plan.files.length} entries)`);
            } else {
              let t: Awaited<ReturnType<typeof injectRpms>>;
              try {
                t = await injectRpms(pkgs, target, rpmOpts);
                bar.update(total, total);
              } finally {
                bar.finish();
              }
              for (const rep of t.reports)
                rpmLog.push(`rpm: installed ${rep.nevra}: ${rep.written.length} files`);
              for (const p of await queueFirstbootPlan(g.fs, t.firstboot)) rpmLog.push(`rpm: firstboot ${p}`);
            }
          } finally {
            for (const p of pkgs) await p.close();
          }
        }
        const { bakeElements } = await import("../elements/apply.js");
        const baked =
          elements.length > 0
            ? await bakeElements(
                g.fs,
                {
                  elementsPath: elementsPath as string,
                  elements,
                  wheelsDir: a.wheels as string | undefined,
                  offline: a.offline === true,
                  allowDuplicateHooks: a["allow-duplicate-hooks"] === true,
                },
                {
                  dryRun: dry,
                  mtime: now,
                  progress: progressBar(ctx.ttyProgress(common) && !dry, "elements", ctx.io.err),
                  debPackages: { image: img, warn: (m: string) => ctx.io.err(`imgpatch: ${m}\n`) },
                  rpmPackages: {
                    image: img,
                    now,
                    missingOwner: a["rpm-owner-fallback"] ? "root" : "error",
                  },
                },
              )
            : undefined;
        if (rpms.length > 0 && !dry) {
          const { finishRpmAgents } = await import("../elements/rpm-route.js");
          const fin = await finishRpmAgents(g.fs, { mtime: now });
          rpmLog.push(
            ...fin.actions.map((x) => `rpm route: ${x}`),
            ...fin.warnings.map((x) => `rpm route: warning: ${x}`),
          );
        }
        return baked;
      },
    );
    if (a.json)
      return ctx.emitJson({
        image: img,
        output: opts.overlay ?? opts.output ?? (opts.inPlace ? img : null),
        dryRun: dry,
        rpm: rpmLog,
        report: r?.plan.report ?? null,
        applied: r?.applied ?? null,
      });
    for (const l of rpmLog) ctx.say(common, l);
    if (r) ctx.say(common, r.text);
    if (r?.applied && common.verbose) for (const l of r.applied.log) ctx.say(common, `  ${l}`);
    if (!dry)
      ctx.say(
        common,
        `${img}: ${[...elements, ...rpms.map((f) => basename(f))].join(" ")} baked -> ${opts.overlay ?? opts.output ?? img}`,
      );
  },
};
