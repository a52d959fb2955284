/**
 * `imgpatch sparsify IN OUT [--in-place]` and `convert --sparsify`: copy only what the filesystems
 * use (virt-sparsify without its VM). Every ext2/3/4 volume's free blocks (from its bitmaps) and
 * every XFS volume's free extents (from each AG's bnobt; see image/free-space-map.ts) are left
 * unallocated in a qcow2 output (holes in a raw one); partition tables, gaps and volumes we do not
 * read are copied as they are. `--in-place` on a qcow2 image
 * discards the free clusters instead (and zeroes the free part of partly used clusters).
 */
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { type BlockDevice, ZeroedRangesDevice } from "@imgpatch/disk";
import { type ConvertStats, convertImage } from "@imgpatch/qcow2";
import { type FreeSpaceMap, freeSpaceMap } from "../image/free-space-map.js";
import { type DiskFormat, openImage, UsageError } from "../image/open-image.js";
import type { CommandContext, CommandSpec, Common } from "./context.js";
import { allowBackingOf, fmtArg } from "./options.js";
import { withProgressBar } from "./progress.js";

/** Converts `device` to `dst` copying only live data; returns the map it used and the copy's stats. */
export async function sparsifyCopy(
  device: BlockDevice,
  dst: string,
  fmt: DiskFormat,
  options: { compress?: boolean; onProgress?: (done: number, total: number) => void } = {},
): Promise<{ map: FreeSpaceMap; stats: ConvertStats }> {
  const map = await freeSpaceMap(device);
  const stats = await convertImage(new ZeroedRangesDevice(device, map.free), dst, {
    format: fmt,
    compress: options.compress === true,
    overwrite: true,
    onProgress: options.onProgress,
  });
  return { map, stats };
}

function report(
  ctx: CommandContext,
  a: Record<string, unknown>,
  src: string,
  dst: string,
  map: FreeSpaceMap,
): void {
  const common = a as unknown as Common;
  if (!common.verbose) return;
  for (const v of map.volumes) {
    const where = v.partition === null ? "whole disk" : `partition ${v.partition}`;
    ctx.say(
      common,
      `  ${where} (${v.filesystem}): ${(v.freeBytes / 1048576).toFixed(1)} MiB free${v.notes.length ? `; ${v.notes.join("; ")}` : ""}`,
    );
  }
  ctx.say(common, `  ${src} -> ${dst}: ${(map.freeBytes / 1048576).toFixed(1)} MiB of free space not copied`);
}

export const sparsifyCommand: CommandSpec = {
  command: "sparsify <src> [dst]",
  describe:
    "copy only the blocks the filesystems use (free space left unallocated), or discard it --in-place",
  builder: (y) =>
    y
      .positional("src", { type: "string", demandOption: true })
      .positional("dst", { type: "string" })
      .option("O", { type: "string", describe: "output format qcow2|raw (default: the input's)" })
      .option("f", { type: "string", describe: "input format" })
      .option("c", { type: "boolean", default: false, describe: "compress (qcow2)" })
      .option("in-place", {
        type: "boolean",
        default: false,
        describe: "discard free space in a qcow2 image itself",
      }),
  run: async (a, ctx) => {
    const src = a.src as string;
    const dst = a.dst as string | undefined;
    ctx.image = src;
    const inPlace = a["in-place"] === true;
    if (inPlace === (dst !== undefined)) throw new UsageError("give either DST or --in-place", src);
    const common = a as unknown as Common;
    if (inPlace) {
      const probe = await openImage(src, {
        format: fmtArg(a.f, "-f"),
        allowBacking: allowBackingOf(a, ctx.env),
      });
      const format = probe.format;
      await probe.device.close();
      if (format !== "qcow2") {
        throw new UsageError(
          "--in-place needs a qcow2 image: a raw file cannot have holes punched from Node (no fallocate); give DST",
          src,
        );
      }
      if (a["dry-run"]) return ctx.say(common, `would discard the free space of ${src}`);
      const { device } = await openImage(src, {
        format: "qcow2",
        readOnly: false,
        allowBacking: allowBackingOf(a, ctx.env),
      });
      let freed = 0;
      let map: FreeSpaceMap;
      try {
        map = await freeSpaceMap(device);
        const cs = (device as { clusterSize?: number }).clusterSize ?? 65536;
        for (const r of map.free) {
          // Whole clusters are discarded (unallocated); the free bytes of a partly used cluster are
          // zeroed, so no deleted data is left behind either way.
          const start = Math.ceil(r.offset / cs) * cs;
          const end = Math.floor((r.offset + r.length) / cs) * cs;
          if (end > start) {
            if (start > r.offset) await device.writeZeroes(r.offset, start - r.offset);
            await device.discard(start, end - start);
            if (r.offset + r.length > end) await device.writeZeroes(end, r.offset + r.length - end);
            freed += end - start;
          } else await device.writeZeroes(r.offset, r.length);
        }
        await device.flush();
      } finally {
        await device.close();
      }
      if (a.json)
        return ctx.emitJson({
          source: src,
          inPlace: true,
          freeBytes: map.freeBytes,
          discardedBytes: freed,
          volumes: map.volumes,
        });
      report(ctx, a, src, src, map);
      return ctx.say(common, `sparsified ${src} in place (${(freed / 1048576).toFixed(1)} MiB discarded)`);
    }
    const opened = await openImage(src, {
      format: fmtArg(a.f, "-f"),
      allowBacking: allowBackingOf(a, ctx.env),
    });
    const fmt = (fmtArg(a.O, "-O") ?? opened.format) as DiskFormat;
    if (a["dry-run"]) {
      await opened.device.close();
      return ctx.say(common, `would sparsify ${src} to ${fmt} ${dst}`);
    }
    const out = dst as string;
    const tmp = join(dirname(out), `.${basename(out)}.sparsify-${process.pid}.tmp`);
    try {
      const { map, stats } = await withProgressBar(
        ctx.ttyProgress(common),
        `sparsifying ${basename(src)}`,
        ctx.io.err,
        (onProgress) => sparsifyCopy(opened.device, tmp, fmt, { compress: a.c === true, onProgress }),
      );
      await rename(tmp, out);
      if (a.json)
        return ctx.emitJson({
          source: src,
          target: out,
          format: fmt,
          freeBytes: map.freeBytes,
          volumes: map.volumes,
          stats,
        });
      report(ctx, a, src, out, map);
      ctx.say(
        common,
        `sparsified ${src} -> ${out} (${fmt}; ${(map.freeBytes / 1048576).toFixed(1)} MiB of free space not copied)`,
      );
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    } finally {
      await opened.device.close();
    }
  },
};
