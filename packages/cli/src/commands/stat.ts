/** `imgpatch stat`: metadata of a guest path (a final symlink is not followed). */
import { modeString } from "../customize/walk.js";
import type { CommandSpec } from "./context.js";
import { statJson } from "./formatting.js";
import { imageOptions, readOpenOptions } from "./options.js";
import { readSelinuxLabel } from "./selinux-label.js";

export const statCommand: CommandSpec = {
  command: "stat <image> <path>",
  describe: "metadata of a guest path (not following a final symlink)",
  builder: (y) =>
    imageOptions(y)
      .positional("image", { type: "string", demandOption: true })
      .positional("path", { type: "string", demandOption: true }),
  run: async (a, ctx) => {
    await ctx.withGuest(a.image as string, readOpenOptions(a, ctx.env), async (g) => {
      const p = a.path as string;
      const s = await g.fs.lstat(p);
      const target = s.type === "symlink" ? await g.fs.readlink(p) : undefined;
      const xattrs = await g.fs.listxattr(p).catch(() => [] as string[]);
      const selinux = await readSelinuxLabel(g.fs, p, s);
      const doc = { ...statJson(p, s), target: target ?? null, xattrs, selinux };
      if (a.json) return ctx.emitJson(doc);
      ctx.io.out(
        `${p}\n  type: ${s.type}${target !== undefined ? ` -> ${target}` : ""}\n  mode: ${doc.mode} (${modeString(s.type, s.mode)})\n  uid: ${s.uid}  gid: ${s.gid}\n  size: ${s.size}  links: ${s.nlink}  inode: ${s.ino}\n  mtime: ${doc.mtime}\n${selinux !== null ? `  selinux: ${selinux}\n` : ""}${xattrs.length ? `  xattrs: ${xattrs.join(", ")}\n` : ""}`,
      );
    });
  },
};
