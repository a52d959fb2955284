/** `imgpatch get`: copy a guest file or tree out to the host. */
import type { CommandSpec, Common } from "./context.js";
import { imageOptions, readOpenOptions } from "./options.js";

export const getCommand: CommandSpec = {
  command: "get <image> <guest> <host>",
  describe: "copy a guest file or tree out (never follows guest symlinks onto host paths; never overwrites)",
  builder: (y) =>
    imageOptions(y)
      .positional("image", { type: "string", demandOption: true })
      .positional("guest", { type: "string", demandOption: true })
      .positional("host", { type: "string", demandOption: true }),
  run: async (a, ctx) => {
    await ctx.withGuest(a.image as string, readOpenOptions(a, ctx.env), async (g) => {
      const { copyOut } = await import("../customize/copy-out.js");
      const r = await copyOut(g.fs, a.guest as string, a.host as string);
      if (a.json) return ctx.emitJson(r);
      ctx.say(
        a as unknown as Common,
        `copied ${r.files} files, ${r.dirs} directories, ${r.symlinks} symlinks to ${a.host}`,
      );
      for (const s of r.skipped) ctx.say(a as unknown as Common, `skipped ${s.path}: ${s.why}`);
    });
  },
};
