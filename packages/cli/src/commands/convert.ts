/** `imgpatch convert`: copy an image to qcow2 or raw (qemu-img convert). */
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { convertImage } from "@imgpatch/qcow2";
import { type DiskFormat, openImage } from "../image/open-image.js";
import type { CommandSpec, Common } from "./context.js";
import { allowBackingOf, fmtArg } from "./options.js";
import { withProgressBar } from "./progress.js";

export const convertCommand: CommandSpec = {
  command: "convert <src> <dst>",
  describe: "copy an image to a new format (qemu-img convert)",
  builder: (y) =>
    y
      .positional("src", { type: "string", demandOption: true })
      .positional("dst", { type: "string", demandOption: true })
      .option("O", { type: "string", default: "qcow2", describe: "output format qcow2|raw" })
      .option("f", { type: "string", describe: "input format" })
      .option("c", { type: "boolean", default: false, describe: "compress (qcow2)" })
      .option("sparsify", {
        type: "boolean",
        default: false,
        describe: "copy only the blocks the filesystems use (see imgpatch sparsify)",
      }),
  run: async (a, ctx) => {
    const src = a.src as string;
    const dst = a.dst as string;
    ctx.image = src;
    const fmt = fmtArg(a.O, "-O") as DiskFormat;
    if (a["dry-run"]) return ctx.say(a as unknown as Common, `would convert ${src} to ${fmt} ${dst}`);
    const { device } = await openImage(src, {
      format: fmtArg(a.f, "-f"),
      allowBacking: allowBackingOf(a, ctx.env),
    });
    const tmp = join(dirname(dst), `.${basename(dst)}.convert-${process.pid}.tmp`);
    try {
      let freeBytes: number | undefined;
      const stats = await withProgressBar(
        ctx.ttyProgress(a as unknown as Common),
        `converting ${basename(src)}`,
        ctx.io.err,
        async (onProgress) => {
          if (a.sparsify !== true)
            return convertImage(device, tmp, {
              format: fmt,
              compress: a.c === true,
              overwrite: true,
              onProgress,
            });
          // loaded only here: the free-space map pulls in the ext4 and XFS readers
          const { sparsifyCopy } = await import("./sparsify.js");
          const r = await sparsifyCopy(device, tmp, fmt, { compress: a.c === true, onProgress });
          freeBytes = r.map.freeBytes;
          return r.stats;
        },
      );
      await rename(tmp, dst);
      if (a.json)
        ctx.emitJson({
          source: src,
          target: dst,
          format: fmt,
          stats,
          ...(freeBytes === undefined ? {} : { freeBytes }),
        });
      else ctx.say(a as unknown as Common, `converted ${src} -> ${dst} (${fmt}${a.c ? ", compressed" : ""})`);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    } finally {
      await device.close();
    }
  },
};
