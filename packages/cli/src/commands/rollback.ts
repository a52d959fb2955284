/** `imgpatch rollback`: restore an image from the undo file an interrupted --in-place run left. */
import { readUndoHeader, undoPathFor } from "@imgpatch/disk";
import { rollbackInPlace } from "../image/open-guest.js";
import { UsageError } from "../image/open-image.js";
import type { CommandSpec, Common } from "./context.js";

export const rollbackCommand: CommandSpec = {
  command: "rollback <image>",
  describe: "restore IMAGE from the undo file an interrupted --in-place run left (IMAGE.imgpatch-undo)",
  builder: (y) => y.positional("image", { type: "string", demandOption: true }),
  run: async (a, ctx) => {
    const path = a.image as string;
    ctx.image = path;
    const undo = undoPathFor(path);
    if (a["dry-run"]) {
      const h = await readUndoHeader(undo);
      return ctx.say(
        a as unknown as Common,
        `would restore ${path} from ${undo} (original size ${h.originalSize})`,
      );
    }
    const r = await rollbackInPlace(path);
    if (r === false) throw new UsageError(`no undo file ${undo}: nothing to roll back`, path);
    if (a.json) return ctx.emitJson({ image: path, undoFile: undo, restoredRanges: r.records, size: r.size });
    ctx.say(
      a as unknown as Common,
      `${path}: rolled back from ${undo} (${r.records} saved ranges restored, size ${r.size})`,
    );
  },
};
