/** `imgpatch create`: an empty qcow2 or raw image (qemu-img create). */
import { writeFile as hostWriteFile, rename, rm, truncate } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { createQcow2 } from "@imgpatch/qcow2";
import { type DiskFormat, UsageError } from "../image/open-image.js";
import type { CommandSpec, Common } from "./context.js";
import { allowBackingOf, fmtArg, missingSize, parseSize } from "./options.js";

export const createCommand: CommandSpec = {
  command: "create <file> [size]",
  describe: "create an empty image (qemu-img create)",
  builder: (y) =>
    y
      .positional("file", { type: "string", demandOption: true })
      .positional("size", { type: "string", describe: "optional with -b (the backing file's size)" })
      .option("f", { type: "string", default: "qcow2", describe: "qcow2|raw" })
      .option("b", { type: "string", describe: "backing file" })
      .option("F", { type: "string", describe: "backing format" }),
  run: async (a, ctx) => {
    const file = a.file as string;
    ctx.image = file;
    const fmt = fmtArg(a.f, "-f") as DiskFormat;
    if (a["dry-run"]) return ctx.say(a as unknown as Common, `would create ${fmt} ${file}`);
    const tmp = join(dirname(file), `.${basename(file)}.create-${process.pid}.tmp`);
    try {
      if (fmt === "raw") {
        if (a.b) throw new UsageError("-b needs -f qcow2", file);
        await hostWriteFile(tmp, new Uint8Array(0), { flag: "wx" });
        if (a.size === undefined) throw new UsageError("create needs a SIZE", file);
        await truncate(tmp, parseSize(a.size as string));
      } else {
        const dev =
          a.b !== undefined
            ? await createQcow2(tmp, {
                size: a.size !== undefined && a.size !== "" ? parseSize(a.size as string) : undefined,
                backing: { path: a.b as string, format: fmtArg(a.F, "-F") },
                allowBacking: allowBackingOf(a, ctx.env),
              })
            : await createQcow2(tmp, {
                size: a.size === undefined ? missingSize(file) : parseSize(a.size as string),
              });
        await dev.close();
      }
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    if (a.json) ctx.emitJson({ file, format: fmt });
    else ctx.say(a as unknown as Common, `created ${file} (${fmt})`);
  },
};
