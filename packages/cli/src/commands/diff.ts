/** `imgpatch diff`: guest files that differ between two images. */
import type { CommandSpec } from "./context.js";
import { allowBackingOf } from "./options.js";

export const diffCommand: CommandSpec = {
  command: "diff <a> <b>",
  describe: "guest files that differ between two images (content compared byte for byte)",
  builder: (y) =>
    y
      .positional("a", { type: "string", demandOption: true })
      .positional("b", { type: "string", demandOption: true }),
  run: async (a, ctx) => {
    const allowBacking = allowBackingOf(a, ctx.env);
    await ctx.withGuest(a.a as string, { allowBacking }, async (ga) => {
      await ctx.withGuest(a.b as string, { allowBacking }, async (gb) => {
        const { diffGuests } = await import("../customize/diff.js");
        const d = await diffGuests(ga.fs, gb.fs);
        if (a.json) return ctx.emitJson(d);
        ctx.io.out(
          d
            .map(
              (e) =>
                `${e.kinds.join(",").padEnd(12)} ${e.path}${e.details.length ? `  (${e.details.join("; ")})` : ""}`,
            )
            .join("\n") + (d.length ? "\n" : ""),
        );
      });
    });
    ctx.image = undefined;
  },
};
