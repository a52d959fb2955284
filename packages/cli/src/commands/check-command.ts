/** `imgpatch check`: the command (the checks themselves are in check.ts, loaded on use). */
import type { CommandSpec } from "./context.js";
import { EXIT } from "./errors.js";
import { unsafeSummary } from "./formatting.js";
import { allowBackingOf } from "./options.js";

export const checkCommand: CommandSpec = {
  command: "check <image>",
  describe: "qcow2 metadata, ext4 and XFS consistency (e2fsck -fn, xfs_repair -n when installed)",
  builder: (y) => y.positional("image", { type: "string", demandOption: true }),
  run: async (a, ctx) => {
    const path = a.image as string;
    ctx.image = path;
    const { checkImage } = await import("./check.js");
    const r = await checkImage(path, { allowBacking: allowBackingOf(a, ctx.env) });
    if (a.json) ctx.emitJson(r);
    else {
      for (const l of r.lines) ctx.io.out(`${l}\n`);
      ctx.io.out(
        r.safety.verdict === "unsafe"
          ? "Refused: the image is unsafe (see safety above).\n"
          : r.clean
            ? "No errors were found.\n"
            : "Problems were found.\n",
      );
    }
    if (r.safety.verdict === "unsafe") {
      ctx.code = EXIT.badImage;
      ctx.io.err(`imgpatch: ${path}: unsafe image: ${unsafeSummary(r.safety)}\n`);
    } else if (!r.clean) ctx.code = EXIT.checkFailed;
  },
};
