/** Command-line arguments → library options, shared by the commands. */
import { delimiter } from "node:path";
import type { Argv } from "yargs";
import type { OpenGuestOptions } from "../image/open-guest.js";
import { type DiskFormat, UsageError } from "../image/open-image.js";
import type { RpmStep, Step } from "./recipe.js";

/** SOURCE_DATE_EPOCH as a Date (seconds since the epoch), when set and valid. */
export function sourceDateEpoch(env: Record<string, string | undefined> = process.env): Date | undefined {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === "") return undefined;
  if (!/^\d{1,12}$/.test(v))
    throw new UsageError(`SOURCE_DATE_EPOCH must be a number of seconds, got "${v}"`);
  return new Date(Number(v) * 1000);
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** qemu-img sizes: 1048576, 512M, 10G, 1.5G (binary units). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`invalid size "${text}" (e.g. 10G, 512M, 1048576)`);
  const n = Math.round(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`invalid size "${text}"`);
  return n;
}

export function missingSize(file: string): never {
  throw new UsageError("create needs a SIZE (or -b BACKING)", file);
}

export function fmtArg(v: unknown, what: string): DiskFormat | undefined {
  if (v === undefined) return undefined;
  if (v === "qcow2" || v === "raw") return v;
  throw new UsageError(`${what}: format must be qcow2 or raw, got "${String(v)}"`);
}

/** --rpm-signature and --rpm-key: rpm-inject's signature policy (see its README). */
export function rpmPolicyOf(a: Record<string, unknown>): Pick<RpmStep, "signature" | "keys"> {
  const signature = a["rpm-signature"] as RpmStep["signature"];
  const keys = a["rpm-key"] === undefined ? undefined : [a["rpm-key"]].flat().map(String);
  return { signature, keys };
}

/** The policy applies to every --rpm step. */
export function withRpmPolicy(steps: Step[], a: Record<string, unknown>): Step[] {
  const { signature, keys } = rpmPolicyOf(a);
  if (signature === undefined && keys === undefined) return steps;
  return steps.map((s) => (s.op === "rpm" ? { ...s, signature, keys } : s));
}

export function mountsArg(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  return (Array.isArray(v) ? v : [v]).map(String);
}

/**
 * The backing policy's extra directories: IMGPATCH_ALLOW_BACKING (colon-separated, like PATH)
 * then every --allow-backing DIR.
 */
export function allowBackingOf(
  a: Record<string, unknown>,
  env: Record<string, string | undefined>,
): string[] {
  const fromEnv = (env.IMGPATCH_ALLOW_BACKING ?? "").split(delimiter).filter((d) => d !== "");
  const flags = a["allow-backing"] === undefined ? [] : [a["allow-backing"]].flat().map(String);
  for (const d of flags) if (d === "") throw new UsageError("--allow-backing needs a directory");
  return [...fromEnv, ...flags];
}

export function outputOptions(
  a: Record<string, unknown>,
  env: Record<string, string | undefined>,
): OpenGuestOptions {
  return {
    allowBacking: allowBackingOf(a, env),
    format: fmtArg(a.format, "--format"),
    mounts: mountsArg(a.mount),
    overlay: a.overlay as string | undefined,
    output: a.output as string | undefined,
    outputFormat: fmtArg(a["output-format"], "--output-format"),
    compress: a.compress === true,
    inPlace: a["in-place"] === true,
    selinuxLabels: a["selinux-labels"] !== false,
  };
}

/** The open options every reading command takes: `--format`, repeatable `-m DEV:MOUNTPOINT`, the backing policy. */
export function readOpenOptions(
  a: Record<string, unknown>,
  env: Record<string, string | undefined>,
): { format?: DiskFormat; mounts?: string[]; allowBacking: string[] } {
  return {
    format: fmtArg(a.format, "--format"),
    mounts: mountsArg(a.mount),
    allowBacking: allowBackingOf(a, env),
  };
}

export function imageOptions(y: Argv): Argv {
  return y
    .option("format", { type: "string", describe: "input format (qcow2|raw); detected when absent" })
    .option("mount", {
      alias: "m",
      type: "string",
      describe: "DEV:MOUNTPOINT (repeatable) (3:/, /dev/sda3:/, UUID=…:/boot); replaces fstab",
    });
}

export function outputModeOptions(y: Argv): Argv {
  return y
    .option("overlay", { type: "string", describe: "write a qcow2 overlay backed by IMAGE" })
    .option("output", { alias: "o", type: "string", describe: "write a full new image" })
    .option("output-format", { type: "string", describe: "format of -o (qcow2|raw; default from the name)" })
    .option("compress", { alias: "c", type: "boolean", describe: "compress -o (qcow2)" })
    .option("in-place", { type: "boolean", describe: "modify IMAGE itself" })
    .option("selinux-labels", {
      type: "boolean",
      describe:
        "label what is written from the guest's own SELinux policy when it is active (default; --no-selinux-labels: write none)",
    });
}
