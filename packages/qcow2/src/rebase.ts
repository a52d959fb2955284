import { rename, rm } from "node:fs/promises";
import { type BlockDevice, FileDevice, UnsupportedError } from "@imgpatch/disk";
import { probeFormat, resolveBackingPath } from "./backing.js";
import { createQcow2 } from "./create.js";
import { Qcow2FormatError } from "./errors.js";
import { EXT_BACKING_FORMAT, parseExtensions, serializeExtensions, stringExtension } from "./extensions.js";
import { MAX_BACKING_NAME, parseHeader, serializeHeader } from "./header.js";
import { NodeHostFile } from "./host-file.js";
import { openQcow2 } from "./open.js";

/** A new backing file: `path` is stored as given (relative names are relative to the image). */
export interface NewBacking {
  path: string;
  format?: "qcow2" | "raw";
}

/**
 * Rewrite the backing file name and format recorded in an image's header, touching nothing
 * else (`qemu-img rebase -u`). The caller promises the new backing file has the same content;
 * `null` removes the backing file. Header, extensions and name are rewritten in one write of
 * cluster 0's head.
 */
export async function setBackingFile(path: string, backing: NewBacking | null): Promise<void> {
  const host = await NodeHostFile.open(path);
  try {
    const head = new Uint8Array(512);
    await host.read(0, head);
    const header = parseHeader(head, path);
    const cs = 2 ** header.clusterBits;
    const cluster0 = new Uint8Array(cs);
    await host.read(0, cluster0);
    const limit = header.backingFileOffset !== 0 ? header.backingFileOffset : cs;
    const exts = parseExtensions(cluster0, header.headerLength, limit, path);
    const oldEnd =
      header.backingFileOffset !== 0 ? header.backingFileOffset + header.backingFileSize : exts.end;
    const keep = exts.all
      .filter((e) => e.type !== EXT_BACKING_FORMAT)
      .map((e) => ({ type: e.type, data: e.data }));
    if (backing?.format) keep.unshift(stringExtension(EXT_BACKING_FORMAT, backing.format));
    const extBytes = serializeExtensions(keep);
    const name = backing ? new TextEncoder().encode(backing.path) : new Uint8Array(0);
    if (name.length > MAX_BACKING_NAME) {
      throw new UnsupportedError("backing file name longer than 1023 bytes", { file: path });
    }
    const nameAt = header.headerLength + extBytes.length;
    if (nameAt + name.length > cs) {
      throw new Qcow2FormatError(
        "backing_file",
        "header, extensions and backing name do not fit in cluster 0",
        {
          file: path,
        },
      );
    }
    header.backingFileOffset = backing ? nameAt : 0;
    header.backingFileSize = name.length;
    const area = new Uint8Array(Math.max(oldEnd, nameAt + name.length));
    area.set(serializeHeader(header), 0);
    area.set(extBytes, header.headerLength);
    area.set(name, nameAt);
    await host.write(0, area);
    await host.sync();
  } finally {
    await host.close();
  }
}

async function openAny(path: string, readOnly: boolean, format?: string): Promise<BlockDevice> {
  const fmt = format ?? (await probeFormat(path));
  return fmt === "qcow2" ? openQcow2(path, { readOnly }) : FileDevice.open(path, { readOnly });
}

/** Split [offset, offset+length) at multiples of `cs`. */
function* pieces(offset: number, length: number, cs: number): Generator<[number, number]> {
  let p = offset;
  const end = offset + length;
  while (p < end) {
    const n = Math.min(end, (Math.floor(p / cs) + 1) * cs) - p;
    yield [p, n];
    p += n;
  }
}

export interface RebaseStats {
  /** Bytes copied into the image because the old and new backing files differ there. */
  bytesCopied: number;
}

/**
 * Safe rebase (`qemu-img rebase -b`): wherever the image itself stores nothing, the guest used
 * to see the old backing file; where the new one differs, the old content is copied into the
 * image first, then the header is switched. The guest view is unchanged. `null` makes the
 * image standalone.
 */
export async function rebaseQcow2(path: string, backing: NewBacking | null): Promise<RebaseStats> {
  const stats: RebaseStats = { bytesCopied: 0 };
  const dev = await openQcow2(path);
  let next: BlockDevice | null = null;
  try {
    if (backing) {
      const p = resolveBackingPath(backing.path, path);
      if (p === null) throw new UnsupportedError("cannot resolve the new backing file", { file: path });
      next = await openAny(p, true, backing.format);
    }
    const cs = dev.clusterSize;
    const step = 16 * cs;
    const oldBuf = new Uint8Array(cs);
    const newBuf = new Uint8Array(cs);
    for (let at = 0; at < dev.size; at += step) {
      const len = Math.min(step, dev.size - at);
      for (const e of await dev.mapExtents(at, len)) {
        if (e.kind !== "unallocated") continue;
        for (const [off, n] of pieces(e.offset, e.length, cs)) {
          const o = oldBuf.subarray(0, n);
          const m = newBuf.subarray(0, n);
          await dev.readInto(off, o); // through the old backing chain
          m.fill(0);
          const avail = next ? Math.max(0, Math.min(n, next.size - off)) : 0;
          if (avail > 0) await next!.readInto(off, m.subarray(0, avail));
          if (Buffer.from(o.buffer, o.byteOffset, n).equals(Buffer.from(m.buffer, m.byteOffset, n))) continue;
          await dev.write(off, o.slice());
          stats.bytesCopied += n;
        }
      }
    }
    await dev.flush();
  } finally {
    await dev.close();
    if (next) await next.close();
  }
  await setBackingFile(path, backing);
  return stats;
}

export interface CommitOptions {
  /** Empty the image afterwards, as qemu-img commit does (default true; refused with snapshots). */
  empty?: boolean;
}

/**
 * Commit an overlay into its backing file (`qemu-img commit`): every range the overlay stores
 * (data, or zeros that hide backing data) is written into the backing image, which is then
 * flushed; afterwards the overlay is replaced by an empty one with the same options (written
 * to a temporary file and renamed over it), so both read the same.
 */
export async function commitQcow2(
  path: string,
  options: CommitOptions = {},
): Promise<{ bytesCommitted: number }> {
  const top = await openQcow2(path, { readOnly: true, backing: "none" });
  let bytesCommitted = 0;
  const info = top.backingInfo;
  const shape = {
    clusterSize: top.clusterSize,
    version: top.header.version,
    extendedL2: top.extendedL2,
    refcountBits: 2 ** top.header.refcountOrder,
  };
  const snapshots = top.snapshots.length;
  let base: BlockDevice | null = null;
  try {
    if (!info?.path) throw new UnsupportedError("image has no backing file to commit into", { file: path });
    base = await openAny(info.path, false, info.format);
    const step = 256 * top.clusterSize;
    const end = Math.min(top.size, base.size);
    for (let at = 0; at < end; at += step) {
      const len = Math.min(step, end - at);
      for (const e of await top.mapExtents(at, len)) {
        if (e.kind === "unallocated") continue;
        if (e.kind === "zero") await base.writeZeroes(e.offset, e.length);
        else await base.write(e.offset, await top.read(e.offset, e.length));
        bytesCommitted += e.length;
      }
    }
    await base.flush();
  } finally {
    await top.close();
    if (base) await base.close();
  }
  if (options.empty ?? true) {
    if (snapshots > 0) throw new UnsupportedError("cannot empty an image that has snapshots", { file: path });
    const tmp = `${path}.empty-${process.pid}`;
    try {
      const fresh = await createQcow2(tmp, {
        ...shape,
        size: (await openSize(path)) ?? 0,
        backing: { path: info!.name, format: info!.format as "qcow2" | "raw" | undefined },
        overwrite: true,
      });
      await fresh.close();
      // The fresh image names the backing file as the old one did (same relative name), and
      // rename keeps it in the same directory, so it resolves to the same file.
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
  return { bytesCommitted };
}

async function openSize(path: string): Promise<number | undefined> {
  const d = await openQcow2(path, { readOnly: true, backing: "none" });
  try {
    return d.size;
  } finally {
    await d.close();
  }
}
