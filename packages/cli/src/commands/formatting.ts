/** Text and JSON shapes of command output shared by several commands. */
import { describeOperation, publicOperation } from "../customize/operations.js";
import { modeString } from "../customize/walk.js";
import type { GuestStats } from "../guest/guest-fs.js";
import type { ImageSafety } from "../image/safety.js";
import type { Step } from "./recipe.js";

/** The first refused link of an unsafe image, in one line. */
export function unsafeSummary(s: ImageSafety): string {
  const l = s.links.find((x) => x.verdict === "refused");
  if (!l) return "refused";
  const from = l.image === s.image ? "" : ` (in ${l.image})`;
  return `${l.kind} "${l.name}"${from} -> ${l.target ?? l.path ?? "(not a host path)"}: ${l.message ?? "refused"}`;
}

export function statJson(path: string, s: GuestStats) {
  return {
    path,
    type: s.type,
    mode: `0${s.mode.toString(8).padStart(3, "0")}`,
    uid: s.uid,
    gid: s.gid,
    size: s.size,
    nlink: s.nlink,
    ino: s.ino,
    mtime: s.mtime.toISOString(),
  };
}

/**
 * The parts of an ls -l line that repeat from line to line (mode and owner columns, the minute),
 * formatted once: a tree walk prints 100,000s of lines.
 */
const lsCache = {
  minute: Number.NaN,
  date: "",
  modes: new Map<string, string>(),
  owners: new Map<number, string>(),
};

export function lsLine(name: string, s: GuestStats, target?: string): string {
  const ms = s.mtime.getTime();
  const minute = Math.floor(ms / 60000);
  if (minute !== lsCache.minute) {
    lsCache.minute = minute;
    lsCache.date = Number.isFinite(ms) ? s.mtime.toISOString().slice(0, 16).replace("T", " ") : "?";
  }
  const modeKey = `${s.type}${s.mode}`;
  let mode = lsCache.modes.get(modeKey);
  if (mode === undefined) {
    mode = modeString(s.type, s.mode);
    if (lsCache.modes.size < 4096) lsCache.modes.set(modeKey, mode);
  }
  // uid and gid below 2^16 share one key (the common case); others are formatted each time.
  const ownerKey = s.uid < 0x10000 && s.gid < 0x10000 ? s.uid * 0x10000 + s.gid : -1;
  let owner = ownerKey >= 0 ? lsCache.owners.get(ownerKey) : undefined;
  if (owner === undefined) {
    owner = `${String(s.uid).padStart(5)} ${String(s.gid).padStart(5)}`;
    if (ownerKey >= 0 && lsCache.owners.size < 4096) lsCache.owners.set(ownerKey, owner);
  }
  return `${mode} ${String(s.nlink).padStart(3)} ${owner} ${String(s.size).padStart(10)} ${lsCache.date} ${name}${target !== undefined ? ` -> ${target}` : ""}`;
}

export function stepLabel(step: Step): string {
  if (step.op === "install") return `install ${step.packages.join(",")}`;
  if (step.op === "deb") return `deb ${JSON.stringify({ host: step.host })}`;
  return step.op === "rpm" ? `rpm ${JSON.stringify({ host: step.host })}` : describeOperation(step);
}

/** A step as --json prints it: passwords never appear (publicOperation). */
export function printableStep(step: Step): Record<string, unknown> {
  return step.op === "rpm" || step.op === "install" || step.op === "deb"
    ? { ...step }
    : publicOperation(step);
}
