/**
 * The safety verdict `info` and `check` print for an image, the way a format inspector gives one:
 * the format as named (file name), as declared (--format) and as probed (the bytes), every host
 * file the metadata names — backing files and data files down the chain, vmdk extents, vhd/qed
 * parents — with where it resolves and whether the backing policy would follow it. Nothing the
 * policy refuses is opened to produce it.
 */
import { dirname, resolve } from "node:path";
import {
  detectImageFormat,
  FileDevice,
  hostLinkPolicy,
  type ImageFormat,
  imageFileReferences,
  inspectHostLink,
} from "@imgpatch/disk";
import { inspectQcow2Chain, type LinkReport } from "@imgpatch/qcow2";
import { type DiskFormat, formatFromName } from "./open-image.js";

/** One host file the image names. */
export interface SafetyLink {
  /** The image holding the name. */
  image: string;
  /** "backing file", "data file", "extent", "parent". */
  kind: string;
  name: string;
  /** Resolved against the image's directory (null for protocol names). */
  path: string | null;
  /** After symlinks, when it exists. */
  target: string | null;
  /**
   * ok: followed; missing: does not exist; refused: the policy refuses it; unreadable: see
   * message; not-opened: the format is not one imgpatch opens, so nothing is followed anyway.
   */
  verdict: "ok" | "missing" | "refused" | "unreadable" | "not-opened";
  reason?: string;
  message?: string;
  /** The directory --allow-backing would need. */
  trust?: string;
  /** A followed backing file: the format it is read as. */
  format?: string;
}

export interface ImageSafety {
  image: string;
  /** What the file name says (.qcow2 → qcow2, .img/.raw → raw), null when it says nothing. */
  namedFormat: DiskFormat | null;
  /** --format, when given. */
  declaredFormat: DiskFormat | null;
  /** What the bytes are (always probed for this report; `--format raw` never probes for opening). */
  probedFormat: ImageFormat;
  probedDescription: string;
  /** What imgpatch opens it as; null when the format is refused as unsupported. */
  openedAs: DiskFormat | null;
  /** The policy's directories. */
  allowed: readonly string[];
  links: SafetyLink[];
  warnings: string[];
  /** "unsafe" when any link is refused by the policy. */
  verdict: "safe" | "unsafe";
}

export interface SafetyOptions {
  format?: DiskFormat;
  allowBacking?: readonly string[];
}

function fromQcow2(l: LinkReport): SafetyLink {
  const out: SafetyLink = {
    image: l.image,
    kind: l.kind,
    name: l.name,
    path: l.path,
    target: l.target,
    verdict: l.verdict,
  };
  if (l.reason !== undefined) out.reason = l.reason;
  if (l.message !== undefined) out.message = l.message;
  if (l.trust !== undefined) out.trust = l.trust;
  if (l.openedAs !== undefined) out.format = l.openedAs;
  return out;
}

/** The safety report of the image at `path` (format errors in the top image are thrown). */
export async function inspectImageSafety(path: string, options: SafetyOptions = {}): Promise<ImageSafety> {
  const dev = await FileDevice.open(path, { readOnly: true });
  let probed: Awaited<ReturnType<typeof detectImageFormat>>;
  let refs: Awaited<ReturnType<typeof imageFileReferences>>;
  try {
    probed = await detectImageFormat(dev);
    refs = await imageFileReferences(dev, probed);
  } finally {
    await dev.close();
  }
  const named = formatFromName(path) ?? null;
  const declared = options.format ?? null;
  const openedAs: DiskFormat | null =
    declared ??
    (probed.format === "qcow2" && probed.supported ? "qcow2" : probed.format === "raw" ? "raw" : null);
  const roots = [dirname(resolve(path)), ...(options.allowBacking ?? [])];
  const policy = await hostLinkPolicy(roots);
  const warnings: string[] = [];
  const links: SafetyLink[] = [];
  if (openedAs === "qcow2") {
    const chain = await inspectQcow2Chain(path, { allowBacking: options.allowBacking });
    links.push(...chain.links.map(fromQcow2));
  } else if (probed.format === "qcow2" && probed.supported) {
    // declared raw: read as raw, the header's names are never followed; list them anyway
    const chain = await inspectQcow2Chain(path, { allowBacking: options.allowBacking });
    for (const l of chain.links.filter((x) => x.image === path))
      links.push({ ...fromQcow2(l), verdict: "not-opened" });
  } else {
    for (const r of refs) {
      const v = await inspectHostLink(
        { kind: r.kind, name: r.name, referrer: path, referrerPath: path },
        policy,
      );
      const link: SafetyLink = {
        image: path,
        kind: r.kind,
        name: r.name,
        path: v.path,
        target: v.target,
        verdict: v.verdict,
      };
      if (v.error) {
        link.reason = v.error.reason;
        link.message = v.error.detail;
        if (v.error.trust !== undefined) link.trust = v.error.trust;
      }
      // Read as raw (declared), nothing is followed. Refused as unsupported, nothing is followed
      // either, but a link the policy would refuse still makes the image unsafe, as an
      // inspector judges it.
      if (openedAs !== null || v.verdict !== "refused") link.verdict = "not-opened";
      links.push(link);
    }
  }
  const namesFiles = links.length > 0;
  // Only a format that names other files makes the confusion dangerous (a self-contained qcow2
  // named .img is most cloud images); declaring raw over any other format is worth saying.
  if (probed.format !== "raw" && (declared === "raw" || (named === "raw" && namesFiles))) {
    const says = declared === "raw" ? "--format raw declares it raw" : "its name says raw";
    warnings.push(
      declared === "raw"
        ? `format confusion: ${says} but its bytes are ${probed.description}${namesFiles ? " naming other files" : ""}; read as raw (nothing it names is followed)`
        : `format confusion: ${says} but its bytes are ${probed.description}${namesFiles ? " naming other files" : ""}; opened as ${openedAs ?? "nothing (unsupported)"} under the backing policy (pass --format raw if it is raw)`,
    );
  } else if (named === "qcow2" && probed.format !== "qcow2" && declared === null) {
    warnings.push(`its name says qcow2 but its bytes are ${probed.description}`);
  }
  if (openedAs === null)
    warnings.push(`${probed.description} is not a format imgpatch opens: nothing it names is followed`);
  const unsafe = links.some((l) => l.verdict === "refused");
  return {
    image: path,
    namedFormat: named,
    declaredFormat: declared,
    probedFormat: probed.format,
    probedDescription: probed.description,
    openedAs,
    allowed: policy.roots,
    links,
    warnings,
    verdict: unsafe ? "unsafe" : "safe",
  };
}

/** The report as text lines (for `info` and `check`). */
export function safetyLines(s: ImageSafety): string[] {
  const fmt = [
    `probed ${s.probedFormat}`,
    ...(s.namedFormat ? [`named ${s.namedFormat}`] : []),
    ...(s.declaredFormat ? [`declared ${s.declaredFormat}`] : []),
    `opened as ${s.openedAs ?? "— (not supported)"}`,
  ];
  const lines = [`safety: ${s.verdict}`, `  format: ${fmt.join(", ")}`, `  allowed: ${s.allowed.join(", ")}`];
  for (const l of s.links) {
    const where = l.target ?? l.path ?? "(not a host path)";
    const from = l.image === s.image ? "" : ` (in ${l.image})`;
    lines.push(
      `  ${l.kind} "${l.name}"${from} -> ${where}: ${l.verdict}${l.message ? ` — ${l.message}` : ""}`,
    );
  }
  if (s.links.length === 0) lines.push("  links: none (the image names no other files)");
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  return lines;
}
