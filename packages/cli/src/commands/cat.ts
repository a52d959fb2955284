/** `imgpatch cat`: a guest file's bytes to stdout. */
import type { CommandSpec } from "./context.js";
import { imageOptions, readOpenOptions } from "./options.js";

export const catCommand: CommandSpec = {
  command: "cat <image> <path>",
  describe: "print a guest file",
  builder: (y) =>
    imageOptions(y)
      .positional("image", { type: "string", demandOption: true })
      .positional("path", { type: "string", demandOption: true }),
  run: async (a, ctx) => {
    await ctx.withGuest(a.image as string, readOpenOptions(a, ctx.env), async (g) => {
      const data = await g.fs.readFile(a.path as string);
      if (a.json)
        return ctx.emitJson({
          path: a.path,
          size: data.length,
          base64: Buffer.from(data).toString("base64"),
        });
      // The bytes as they are (binaries, other encodings), like cat(1) and virt-cat.
      if (ctx.io.outBytes) ctx.io.outBytes(data);
      else ctx.io.out(new TextDecoder().decode(data));
    });
  },
};
