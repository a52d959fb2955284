import { realpath } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { type BlockDevice, FileDevice, type HostLinkPolicy, IoError, isProtocolName } from "@imgpatch/disk";
import { Qcow2BackingLoopError, Qcow2UnsupportedError } from "./errors.js";
import { QCOW2_MAGIC } from "./header.js";
import type { HostFile } from "./host-file.js";

/** A backing-file reference as found in an image header. */
export interface BackingRef {
  /** The name exactly as stored in the header. */
  name: string;
  /** The name resolved against the referring image's directory (null when it has none). */
  path: string | null;
  /** From the backing-format header extension, if present. */
  format?: string;
  /** Canonical paths of the images above, top first (for loop detection). */
  chain: readonly string[];
  /** The image that refers to it. */
  referrer: string;
  /** That image's host path (relative names resolve against its directory), null when it has none. */
  referrerPath: string | null;
  /** Byte offset of the name in the referring image. */
  offset: number;
  /** The backing policy of the chain: where links may lead (see OpenQcow2Options.allowBacking). */
  policy: HostLinkPolicy;
}

/**
 * Opens a backing image. The default opens qcow2 backing files with openQcow2 (read-only,
 * recursively) and anything else as raw; supply your own to redirect or sandbox lookups.
 */
export type BackingResolver = (ref: BackingRef) => Promise<BlockDevice>;

/** Resolve a stored backing name the way qemu does: relative to the overlay's directory. */
export function resolveBackingPath(name: string, referrerPath: string | null): string | null {
  if (isAbsolute(name)) return name;
  if (referrerPath === null) return null;
  return resolve(dirname(referrerPath), name);
}

/** The first bytes of an open file tell qcow2 from raw. */
export async function probeHostFormat(host: HostFile): Promise<"qcow2" | "raw"> {
  const head = new Uint8Array(4);
  if ((await host.read(0, head)) < 4) return "raw";
  const magic = ((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0;
  return magic === QCOW2_MAGIC ? "qcow2" : "raw";
}

/** Read the first bytes of a file to tell qcow2 from raw. */
export async function probeFormat(path: string): Promise<"qcow2" | "raw"> {
  const dev = await FileDevice.open(path, { readOnly: true });
  try {
    if (dev.size < 4) return "raw";
    const head = await dev.read(0, 4);
    const magic = ((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0;
    return magic === QCOW2_MAGIC ? "qcow2" : "raw";
  } finally {
    await dev.close();
  }
}

/** Canonical path for loop detection, with a clear error when the file is missing. */
export async function canonicalBackingPath(ref: BackingRef): Promise<string> {
  if (ref.name.startsWith("json:") || isProtocolName(ref.name)) {
    throw new Qcow2UnsupportedError(
      "backing_file",
      `backing file "${ref.name}" uses a protocol we cannot open`,
      {
        file: ref.referrer,
      },
    );
  }
  if (ref.path === null) {
    throw new Qcow2UnsupportedError(
      "backing_file",
      `relative backing file "${ref.name}" cannot be resolved: the image was not opened from a path (pass a backing resolver)`,
      { file: ref.referrer },
    );
  }
  let real: string;
  try {
    real = await realpath(ref.path);
  } catch (err) {
    throw new IoError(
      `backing file "${ref.name}" (${ref.path}) cannot be opened`,
      { file: ref.referrer },
      { cause: err },
    );
  }
  if (ref.chain.includes(real)) throw new Qcow2BackingLoopError([...ref.chain, real], { file: ref.referrer });
  return real;
}
