/** `imgpatch overlay`: a qcow2 overlay whose backing file is BASE. */
import { openGuest } from "../image/open-guest.js";
import type { CommandSpec, Common } from "./context.js";
import { allowBackingOf } from "./options.js";

export const overlayCommand: CommandSpec = {
  command: "overlay <base> <out>",
  describe: "create a qcow2 overlay whose backing file is BASE",
  builder: (y) =>
    y
      .positional("base", { type: "string", demandOption: true })
      .positional("out", { type: "string", demandOption: true }),
  run: async (a, ctx) => {
    ctx.image = a.base as string;
    const g = await openGuest(a.base as string, {
      overlay: a.out as string,
      allowBacking: allowBackingOf(a, ctx.env),
    });
    const r = await g.commit();
    if (a.json) ctx.emitJson({ base: a.base, overlay: r.output });
    else ctx.say(a as unknown as Common, `created overlay ${r.output} backed by ${a.base}`);
  },
};
