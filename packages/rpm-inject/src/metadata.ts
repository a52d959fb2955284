/**
 * Package-level metadata for reports: scriptlets with their interpreters, triggers and dependencies.
 */
import type { RpmHeader } from "./header.js";
import { Sense, Tag } from "./tags.js";

export type ScriptletPhase = "pretrans" | "pre" | "post" | "preun" | "postun" | "posttrans" | "verify";

export interface Scriptlet {
  phase: ScriptletPhase;
  /** Interpreter and its arguments, e.g. ["/bin/sh"] or ["<lua>"]; rpm's default is /bin/sh. */
  interpreter: string[];
  /** Script body ("" for `-p /sbin/ldconfig`-style scriptlets that only run the program). */
  body: string;
  /** RPMSCRIPT_FLAG_* bits (1 = expand macros, 2 = query format, 4 = critical). */
  flags: number;
  /** Lua scriptlets run inside rpm itself; they cannot be run by a shell at first boot. */
  lua: boolean;
}

/** Scriptlet tags in the order rpm runs them on install (then removal ones, for the report). */
const SCRIPTLETS: { phase: ScriptletPhase; body: number; prog: number; flags?: number }[] = [
  { phase: "pretrans", body: Tag.PRETRANS, prog: Tag.PRETRANSPROG, flags: Tag.PRETRANSFLAGS },
  { phase: "pre", body: Tag.PREIN, prog: Tag.PREINPROG, flags: Tag.PREINFLAGS },
  { phase: "post", body: Tag.POSTIN, prog: Tag.POSTINPROG, flags: Tag.POSTINFLAGS },
  { phase: "posttrans", body: Tag.POSTTRANS, prog: Tag.POSTTRANSPROG, flags: Tag.POSTTRANSFLAGS },
  { phase: "preun", body: Tag.PREUN, prog: Tag.PREUNPROG, flags: Tag.PREUNFLAGS },
  { phase: "postun", body: Tag.POSTUN, prog: Tag.POSTUNPROG, flags: Tag.POSTUNFLAGS },
  { phase: "verify", body: Tag.VERIFYSCRIPT, prog: 1091 },
];

export function readScriptlets(h: RpmHeader): Scriptlet[] {
  const out: Scriptlet[] = [];
  for (const s of SCRIPTLETS) {
    const body = h.string(s.body);
    const prog = h.strings(s.prog);
    if (body === undefined && prog === undefined) continue;
    const interpreter = prog && prog.length > 0 ? prog : ["/bin/sh"];
    out.push({
      phase: s.phase,
      interpreter,
      body: body ?? "",
      flags: (s.flags !== undefined ? h.number(s.flags) : undefined) ?? 0,
      lua: interpreter[0] === "<lua>",
    });
  }
  return out;
}

export type TriggerKind = "triggerprein" | "triggerin" | "triggerun" | "triggerpostun";

export interface Trigger {
  kind: TriggerKind;
  /** The package name whose (un)installation fires it, with the version condition. */
  condition: string;
  interpreter: string[];
  body: string;
}

export function readTriggers(h: RpmHeader): Trigger[] {
  const names = h.strings(Tag.TRIGGERNAME);
  if (!names) return [];
  const versions = h.strings(Tag.TRIGGERVERSION) ?? [];
  const flags = h.numbers(Tag.TRIGGERFLAGS) ?? [];
  const index = h.numbers(Tag.TRIGGERINDEX) ?? [];
  const scripts = h.strings(Tag.TRIGGERSCRIPTS) ?? [];
  const progs = h.strings(Tag.TRIGGERSCRIPTPROG) ?? [];
  return names.map((name, i) => {
    const f = flags[i] ?? 0;
    const kind: TriggerKind =
      f & Sense.TRIGGERPREIN
        ? "triggerprein"
        : f & Sense.TRIGGERUN
          ? "triggerun"
          : f & Sense.TRIGGERPOSTUN
            ? "triggerpostun"
            : "triggerin";
    const si = index[i] ?? i;
    return {
      kind,
      condition: formatDep(name, f, versions[i] ?? ""),
      interpreter: [progs[si] ?? "/bin/sh"],
      body: scripts[si] ?? "",
    };
  });
}

/** Number of file triggers (reported, never run). */
export function countFileTriggers(h: RpmHeader): number {
  return (h.strings(Tag.FILETRIGGERNAME)?.length ?? 0) + (h.strings(Tag.TRANSFILETRIGGERNAME)?.length ?? 0);
}

export function formatDep(name: string, flags: number, version: string): string {
  if (!version) return name;
  let op = "";
  if (flags & Sense.LESS) op += "<";
  if (flags & Sense.GREATER) op += ">";
  if (flags & Sense.EQUAL) op += "=";
  return op ? `${name} ${op} ${version}` : name;
}

export function readDeps(h: RpmHeader, nameTag: number, flagsTag: number, versionTag: number): string[] {
  const names = h.strings(nameTag) ?? [];
  const flags = h.numbers(flagsTag) ?? [];
  const versions = h.strings(versionTag) ?? [];
  return names.map((n, i) => formatDep(n, flags[i] ?? 0, versions[i] ?? ""));
}
