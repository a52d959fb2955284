/**
 * A format inspector's view of a qcow2 chain: every host file the images name (backing files,
 * external data files), where each resolves and whether the backing policy lets it be followed —
 * found without reading a byte of any file the policy refuses.
 */
import { realpath } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import {
  type HostLinkPolicy,
  hostLinkPolicy,
  inspectHostLink,
  openHostLink,
  type UnsafeLinkReason,
} from "@imgpatch/disk";
import { probeHostFormat } from "./backing.js";
import { Qcow2FormatError } from "./errors.js";
import { parseExtensions } from "./extensions.js";
import { INCOMPAT_DATA_FILE, MAX_BACKING_NAME, parseHeader } from "./header.js";
import { type HostFile, NodeHostFile } from "./host-file.js";

/** The host files one qcow2 image names. */
export interface Qcow2Links {
  /** Backing name (up to its first NUL), its offset in the file, and the backing-format extension. */
  backing?: { name: string; offset: number; format?: string };
  /** The external data file name, when the image uses one (incompatible bit 2). */
  dataFile?: { name?: string };
}

/** Reads the names from cluster 0 (header, extensions, backing name), validated like openQcow2 does. */
export async function readQcow2Links(host: HostFile): Promise<Qcow2Links> {
  const file = host.name;
  const first = new Uint8Array(Math.min(512, host.length));
  await host.read(0, first);
  const header = parseHeader(first, file);
  const cs = 2 ** header.clusterBits;
  const cluster0 = new Uint8Array(cs);
  await host.read(0, cluster0);
  const out: Qcow2Links = {};
  const hasBacking = header.backingFileOffset !== 0;
  if (hasBacking) {
    if (header.backingFileSize > MAX_BACKING_NAME || header.backingFileSize === 0) {
      throw new Qcow2FormatError("backing_file_size", `${header.backingFileSize} is out of range (1..1023)`, {
        file,
        offset: 16,
      });
    }
    if (
      header.backingFileOffset + header.backingFileSize > cs ||
      header.backingFileOffset < header.headerLength
    ) {
      throw new Qcow2FormatError("backing_file_offset", "backing file name lies outside the first cluster", {
        file,
        offset: 8,
      });
    }
  }
  const ext = parseExtensions(
    cluster0,
    header.headerLength,
    hasBacking ? header.backingFileOffset : cs,
    file,
  );
  if (hasBacking) {
    const raw = cluster0.subarray(
      header.backingFileOffset,
      header.backingFileOffset + header.backingFileSize,
    );
    const nul = raw.indexOf(0);
    const name = new TextDecoder().decode(nul < 0 ? raw : raw.subarray(0, nul));
    if (name !== "") out.backing = { name, offset: header.backingFileOffset, format: ext.backingFormat };
  }
  if ((header.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n) out.dataFile = { name: ext.dataFile };
  return out;
}

/** One link of the chain and the policy's verdict on it. */
export interface LinkReport {
  /** The image holding the name. */
  image: string;
  kind: "backing file" | "data file";
  /** As stored in the image. */
  name: string;
  /** Backing-format extension, when present. */
  format?: string;
  /** Resolved against the image's directory (null: a protocol name, or no directory). */
  path: string | null;
  /** After symlinks, when it exists. */
  target: string | null;
  /** ok: may be followed; missing: does not exist; refused: the policy refuses it; unreadable: see message. */
  verdict: "ok" | "missing" | "refused" | "unreadable";
  reason?: UnsafeLinkReason;
  message?: string;
  /** The directory --allow-backing would need (reason "outside"). */
  trust?: string;
  /** A followed backing file: the format it is read as (the backing-format extension, else probed). */
  openedAs?: string;
}

export interface ChainSafety {
  /** The policy's directories. */
  allowed: readonly string[];
  /** Top first; a backing file's own links follow it. */
  links: LinkReport[];
  /** False when any link is refused. */
  safe: boolean;
}

export interface InspectChainOptions {
  allowBacking?: readonly string[];
  /** Default: the image's directory. */
  backingRoot?: string;
}

/** Longest chain walked (loops are caught earlier; this bounds a very long innocent-looking chain). */
const MAX_DEPTH = 256;

/**
 * Every link of the chain of the qcow2 at `path`, checked against the backing policy. Refused
 * links are reported, never opened; a followed backing file is opened under the policy (the same
 * way openQcow2 does) to read its own links.
 */
export async function inspectQcow2Chain(
  path: string,
  options: InspectChainOptions = {},
): Promise<ChainSafety> {
  const policy = await hostLinkPolicy([
    options.backingRoot ?? dirname(resolve(path)),
    ...(options.allowBacking ?? []),
  ]);
  const links: LinkReport[] = [];
  const top = await NodeHostFile.open(path, { readOnly: true });
  const seen = new Set([await realpath(path).catch(() => resolve(path))]);
  await walk(top, path, policy, links, seen, 0);
  return { allowed: policy.roots, links, safe: !links.some((l) => l.verdict === "refused") };
}

async function walk(
  host: HostFile,
  path: string,
  policy: HostLinkPolicy,
  links: LinkReport[],
  seen: Set<string>,
  depth: number,
): Promise<void> {
  let found: Qcow2Links;
  try {
    found = await readQcow2Links(host);
  } finally {
    await host.close();
  }
  if (found.dataFile) {
    const name = found.dataFile.name;
    if (name === undefined) {
      links.push({
        image: path,
        kind: "data file",
        name: "",
        path: null,
        target: null,
        verdict: "unreadable",
        message: "the image needs a data file but does not name it",
      });
    } else {
      const v = await inspectHostLink(
        { kind: "data file", name, referrer: path, referrerPath: path },
        policy,
      );
      links.push(report(path, "data file", name, undefined, v));
    }
  }
  const b = found.backing;
  if (!b) return;
  const link = { kind: "backing file", name: b.name, referrer: path, referrerPath: path, offset: b.offset };
  const v = await inspectHostLink(link, policy);
  const r = report(path, "backing file", b.name, b.format, v);
  links.push(r);
  if (v.verdict !== "ok" || v.target === null) return;
  if (seen.has(v.target) || depth >= MAX_DEPTH) {
    r.verdict = "unreadable";
    r.message = seen.has(v.target) ? "the backing chain loops here" : `chain deeper than ${MAX_DEPTH}`;
    return;
  }
  seen.add(v.target);
  let next: NodeHostFile;
  try {
    const o = await openHostLink(link, policy);
    next = NodeHostFile.fromHandle(o.path, o.handle, o.size, true);
  } catch (err) {
    r.verdict = "unreadable";
    r.message = (err as Error).message;
    return;
  }
  const format = b.format ?? (await probeHostFormat(next));
  r.openedAs = format;
  if (format !== "qcow2") {
    await next.close();
    return;
  }
  try {
    await walk(next, v.path ?? v.target, policy, links, seen, depth + 1);
  } catch (err) {
    r.verdict = "unreadable";
    r.message = (err as Error).message;
  }
}

function report(
  image: string,
  kind: LinkReport["kind"],
  name: string,
  format: string | undefined,
  v: Awaited<ReturnType<typeof inspectHostLink>>,
): LinkReport {
  const r: LinkReport = { image, kind, name, path: v.path, target: v.target, verdict: v.verdict };
  if (format !== undefined) r.format = format;
  if (v.error) {
    r.reason = v.error.reason;
    r.message = v.error.detail;
    if (v.error.trust !== undefined) r.trust = v.error.trust;
  }
  return r;
}
