/**
 * `imgpatch sysprep`: virt-sysprep's operations (src/sysprep/) through openGuest, so ext4 and XFS
 * guests, SELinux labels, the output modes and the in-place undo log all apply. The customize
 * operations are accepted too and run by the `customize` operation (last), as in virt-sysprep;
 * `--enable` is virt-sysprep's (operations), so customize's systemd --enable is not offered here.
 */
import { RANDOM_PASSWORD_NOTE } from "../customize/operations.js";
import { UsageError } from "../image/open-image.js";
import {
  checkRefused,
  DryRunGuestFs,
  listOperationsText,
  runSysprep,
  selectOperations,
  setFilesystemUuids,
  userAccountLists,
} from "../sysprep/index.js";
import type { CommandSpec, Common } from "./context.js";
import { printableStep, stepLabel } from "./formatting.js";
import { debOptionsOf } from "./install.js";
import { imageOptions, outputModeOptions, outputOptions, sourceDateEpoch, withRpmPolicy } from "./options.js";
import { progressBar, type StepProgress } from "./progress.js";
import { OPERATION_NAMES, orderedSteps, withOperationOptions } from "./recipe.js";
import { runSteps } from "./steps.js";

const list = (v: unknown): string[] => (v === undefined ? [] : [v].flat().map(String));

/** The customize operations sysprep takes: all of customize's but `enable` (sysprep's own option). */
const CUSTOMIZE_OPS = OPERATION_NAMES.filter((n) => n !== "enable");

/** The raw arguments after `sysprep` without the sysprep-only options that share a customize name. */
function customizeArgs(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--enable") {
      i++;
      continue;
    }
    if (a.startsWith("--enable=")) continue;
    out.push(a);
  }
  return out;
}

export const sysprepCommand: CommandSpec = {
  command: "sysprep [image]",
  describe: "virt-sysprep's operations: remove machine-id, host keys, logs, leases... (43 operations)",
  builder: (y) => {
    const z = outputModeOptions(imageOptions(y.positional("image", { type: "string" })))
      .option("add", { alias: "a", type: "string", describe: "the image (virt-sysprep style)" })
      .option("operations", {
        alias: "operation",
        type: "string",
        array: true,
        describe:
          "NAME,-NAME,defaults,-defaults,all,-all: add/remove operations (repeatable; starts from --enable's set or nothing)",
      })
      .option("enable", { type: "string", describe: "exactly these operations (comma-separated; once)" })
      .option("list-operations", {
        type: "boolean",
        describe: "list the operations (* = default set) and exit",
      })
      .option("remove-user-accounts", {
        type: "string",
        array: true,
        describe: "user-account: remove only these users (comma-separated, repeatable)",
      })
      .option("keep-user-accounts", {
        type: "string",
        array: true,
        describe: "user-account: keep these users (comma-separated, repeatable)",
      })
      .option("rpm-signature", {
        type: "string",
        choices: ["required", "if-present", "ignore"],
        describe: "--rpm: signature policy (as customize)",
      })
      .option("rpm-key", {
        type: "string",
        array: true,
        describe: "--rpm: trust this key file (as customize)",
      })
      .option("rpm-owner-fallback", { type: "boolean", describe: "--rpm: as customize --rpm-owner-fallback" })
      .option("repo", {
        type: "string",
        array: true,
        describe: "--install: as customize --repo (repeatable)",
      })
      .option("install-recommends", { type: "boolean", describe: "--install/--deb: as customize" })
      .option("allow-unauthenticated", { type: "boolean", describe: "--install/--deb: as customize" });
    return withOperationOptions(
      z,
      CUSTOMIZE_OPS,
      "customize operations (run by the customize operation, last):",
    );
  },
  run: async (a, ctx) => {
    const common = a as unknown as Common;
    if (a["list-operations"]) {
      ctx.io.out(listOperationsText());
      return;
    }
    const img = (a.image ?? a.add) as string | undefined;
    if (!img) throw new UsageError("sysprep needs an IMAGE (positional or -a IMAGE)");
    if (a.image && a.add) throw new UsageError("give the image once (positional or -a)");
    ctx.image = img;
    const selection = selectOperations(a.enable as string | undefined, list(a.operations));
    checkRefused(selection);
    const users = userAccountLists(selection, list(a["remove-user-accounts"]), list(a["keep-user-accounts"]));
    const steps = withRpmPolicy(
      await orderedSteps(customizeArgs(ctx.argv.slice(ctx.argv.indexOf("sysprep") + 1))),
      a,
    );
    const opts = { ...outputOptions(a, ctx.env), now: sourceDateEpoch(ctx.env) };
    const now = opts.now;
    const dry = a["dry-run"] === true;
    if (!dry && !opts.overlay && !opts.output && !opts.inPlace)
      throw new UsageError(
        "sysprep writes an output: give --overlay OUT, -o OUT or --in-place (or --dry-run)",
        img,
      );
    const customizeOn = selection.operations.has("customize");
    const print = (name: string, changes: string[]) => {
      if (!common.verbose) return;
      ctx.say(common, `${name}:`);
      for (const l of changes) ctx.say(common, `  ${l}`);
    };
    if (steps.length > 0 && !customizeOn)
      ctx.io.err(
        "imgpatch: warning: customize operations given but the customize operation is not selected: ignored\n",
      );

    if (dry) {
      const report = await ctx.withGuest(
        img,
        { format: opts.format, mounts: opts.mounts, allowBacking: opts.allowBacking },
        async (g) => {
          const r = await runSysprep(new DryRunGuestFs(g.fs), g.os, {
            selection,
            ...users,
            now,
            customizeSteps: async () => steps.map((s) => `would run ${stepLabel(s)}`),
          });
          return { r, volumes: g.mounts.filter((m) => m.editable).length };
        },
      );
      const { r } = report;
      if (a.json)
        return ctx.emitJson({
          image: img,
          dryRun: true,
          inspection: r.inspection,
          operations: r.operations,
          customize: customizeOn ? steps.map(printableStep) : [],
          fsUuids: r.fsUuids,
          notes: r.notes,
        });
      ctx.say(common, `dry run on ${img} (nothing is written):`);
      for (const o of r.operations) {
        if (o.changes.length === 0) continue;
        ctx.say(common, `${o.op}:`);
        for (const l of o.changes)
          ctx.say(common, `  ${l.replace(/^(delete|truncate|write|edit|touch) /, "would $1 ")}`);
      }
      if (r.fsUuids)
        ctx.say(common, "fs-uuids: would give every edited ext2/3/4 and XFS volume a new random UUID");
      for (const n of r.notes) ctx.say(common, `note: ${n}`);
      return;
    }

    ctx.progressOn = ctx.ttyProgress(common) && opts.output !== undefined;
    let uuidLines: string[] = [];
    let fsUuids = false;
    const result = await ctx.withGuest(
      img,
      opts,
      async (g) => {
        for (const w of g.warnings) if (common.verbose) ctx.io.err(`imgpatch: warning: ${img}: ${w}\n`);
        const r = await runSysprep(g.fs, g.os, {
          selection,
          ...users,
          now,
          onOperation: (name, changes) => {
            ctx.progress(common, `sysprep ${name}`);
            print(name, changes);
          },
          customizeSteps: async () => {
            const done = await runSteps(g, steps, {
              now,
              rpmMissingOwner: a["rpm-owner-fallback"] ? "root" : "error",
              repos: a.repo === undefined ? undefined : list(a.repo),
              deb: debOptionsOf(a, ctx.io.err, ctx.ttyProgress(common)),
              progress: ctx.ttyProgress(common)
                ? (label: string): StepProgress => progressBar(true, label, ctx.io.err)
                : undefined,
            });
            const lines = done.flatMap((d) => d.changes);
            for (const l of lines) if (l.startsWith(RANDOM_PASSWORD_NOTE)) ctx.say(common, l);
            return lines;
          },
        });
        fsUuids = r.fsUuids;
        return r;
      },
      {
        afterSync: async (volumes) => {
          if (!fsUuids) return;
          uuidLines = await setFilesystemUuids(volumes);
        },
      },
    );
    ctx.progressDone(common);
    if (uuidLines.length > 0) print("fs-uuids", uuidLines);
    const out = opts.overlay ?? opts.output ?? img;
    const operations = [...result.operations];
    if (fsUuids) operations.push({ op: "fs-uuids", changes: uuidLines });
    if (a.json)
      return ctx.emitJson({
        image: img,
        output: out,
        inspection: result.inspection,
        operations,
        customize: steps.map(printableStep),
        notes: result.notes,
      });
    for (const n of result.notes) ctx.say(common, `note: ${n}`);
    const changed = operations.reduce((n, o) => n + o.changes.length, 0);
    ctx.say(common, `${img}: ${operations.length} sysprep operations, ${changed} changes -> ${out}`);
  },
};
