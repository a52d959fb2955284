/** `imgpatch info`: format, safety verdict, backing chain, partitions, filesystems, mounts and OS. */
import { stat } from "node:fs/promises";
import { inspectDisk } from "@imgpatch/disk";
import { qcow2Info } from "@imgpatch/qcow2";
import type { Guest } from "../image/open-guest.js";
import { openImage, UsageError } from "../image/open-image.js";
import { inspectImageSafety, safetyLines } from "../image/safety.js";
import type { CommandSpec, Common } from "./context.js";
import { EXIT } from "./errors.js";
import { unsafeSummary } from "./formatting.js";
import { allowBackingOf, fmtArg, imageOptions, readOpenOptions } from "./options.js";
import { formatBytes } from "./progress.js";

export const infoCommand: CommandSpec = {
  command: "info <image>",
  describe: "format, backing chain, partitions, filesystems, mounts and OS",
  builder: (y) => imageOptions(y.positional("image", { type: "string", demandOption: true })),
  run: async (a, ctx) => {
    const path = a.image as string;
    ctx.image = path;
    const allowBacking = allowBackingOf(a, ctx.env);
    const declared = fmtArg(a.format, "--format");
    const st = await stat(path).catch(() => undefined);
    if (!st) throw new UsageError("no such image file", path);
    if (!st.isFile() && !st.isBlockDevice()) throw new UsageError("not a regular file", path);
    const safety = await inspectImageSafety(path, { format: declared, allowBacking });
    if (safety.verdict === "unsafe") {
      // the report is the answer; the guest is not opened (that would follow the refused link)
      if (a.json) ctx.emitJson({ image: path, format: safety.openedAs, safety });
      else ctx.say(a as unknown as Common, [`image: ${path}`, ...safetyLines(safety)].join("\n"));
      ctx.io.err(`imgpatch: ${path}: unsafe image: ${unsafeSummary(safety)}\n`);
      ctx.code = EXIT.badImage;
      return;
    }
    const top = await qcow2Info(path).catch(() => undefined);
    const { device, format } = await openImage(path, { format: declared, allowBacking });
    let disk: Awaited<ReturnType<typeof inspectDisk>>;
    const virtualSize = device.size;
    try {
      disk = await inspectDisk(device);
    } finally {
      await device.close();
    }
    let guest: { mounts: Guest["mounts"]; os: Guest["os"]; warnings: string[] } | { error: string };
    try {
      guest = await ctx.withGuest(path, readOpenOptions(a, ctx.env), async (g) => ({
        mounts: g.mounts,
        os: g.os,
        warnings: g.warnings,
      }));
    } catch (err) {
      guest = { error: (err as Error).message };
    }
    const doc = {
      image: path,
      format,
      virtualSize: (format === "qcow2" ? top?.[0]?.virtualSize : undefined) ?? virtualSize,
      backingChain: safety.links
        .filter((l) => l.kind === "backing file" && l.verdict === "ok")
        .map((l) => ({ filename: l.path, format: l.format ?? null })),
      partitionTable: disk.table ? disk.table.type : null,
      volumes: disk.volumes.map((v) => ({
        partition: v.partition
          ? {
              number: v.partition.number,
              start: v.partition.start,
              size: v.partition.size,
              type: v.partition.type,
              typeName: v.partition.typeName ?? null,
              name: v.partition.name,
              uuid: v.partition.uuid,
            }
          : null,
        filesystem: v.filesystem
          ? {
              type: v.filesystem.type,
              label: v.filesystem.label ?? null,
              uuid: v.filesystem.uuid ?? null,
            }
          : null,
      })),
      guest,
      safety,
    };
    if (a.json) return ctx.emitJson(doc);
    const lines = [`image: ${path}`, `format: ${format}`];
    if (doc.virtualSize !== undefined)
      lines.push(`virtual size: ${formatBytes(doc.virtualSize)} (${doc.virtualSize} bytes)`);
    for (const b of doc.backingChain) lines.push(`backing: ${b.filename} (${b.format})`);
    lines.push(`partition table: ${doc.partitionTable ?? "none"}`);
    for (const v of doc.volumes) {
      const where = v.partition
        ? `partition ${v.partition.number} (${v.partition.typeName ?? v.partition.type})`
        : "whole disk";
      const fs = v.filesystem
        ? `${v.filesystem.type}${v.filesystem.label ? ` "${v.filesystem.label}"` : ""}${v.filesystem.uuid ? ` UUID=${v.filesystem.uuid}` : ""}`
        : "unrecognised";
      lines.push(`  ${where}: ${fs}`);
    }
    lines.push(...safetyLines(safety));
    if ("error" in guest) lines.push(`guest: ${guest.error}`);
    else {
      for (const m of guest.mounts)
        lines.push(`mount: ${m.mountpoint} <- ${m.source}${m.reason ? ` [${m.reason}]` : ""}`);
      if (guest.os.PRETTY_NAME ?? guest.os.NAME) lines.push(`os: ${guest.os.PRETTY_NAME ?? guest.os.NAME}`);
      for (const w of guest.warnings) lines.push(`warning: ${w}`);
    }
    ctx.say(a as unknown as Common, lines.join("\n"));
  },
};
