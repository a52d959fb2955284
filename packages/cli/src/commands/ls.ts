/** `imgpatch ls`: list a guest directory (-l long, -R recursive). */
import { basename } from "node:path";
import { walkGuest, walkGuestBatches } from "../customize/walk.js";
import type { GuestStats } from "../guest/guest-fs.js";
import type { CommandSpec } from "./context.js";
import { lsLine, statJson } from "./formatting.js";
import { imageOptions, readOpenOptions } from "./options.js";
import { readSelinuxLabel } from "./selinux-label.js";

export const lsCommand: CommandSpec = {
  command: "ls <image> [path]",
  describe: "list a guest directory",
  builder: (y) =>
    imageOptions(y)
      .positional("image", { type: "string", demandOption: true })
      .positional("path", { type: "string", default: "/" })
      .option("l", { type: "boolean", default: false, describe: "long listing" })
      .option("R", { type: "boolean", default: false, describe: "recursive" })
      .option("Z", { type: "boolean", default: false, describe: "show SELinux labels (security.selinux)" }),
  run: async (a, ctx) => {
    await ctx.withGuest(a.image as string, readOpenOptions(a, ctx.env), async (g) => {
      const root = a.path as string;
      const entries: Array<{ path: string; stats: GuestStats; target?: string }> = [];
      const rootStat = await g.fs.stat(root);
      const labels = new Map<string, string | null>();
      const name = (p: string) => (a.R ? p : basename(p) || p);
      const z = (p: string) => (a.Z ? `${labels.get(p) ?? "?"} ` : "");
      if (a.R && !a.json) {
        // Printed as the walk goes (a tree of 100,000s of entries is not held in memory).
        let lines: string[] = [];
        for await (const batch of walkGuestBatches(g.fs, root))
          for (const e of batch) {
            const target = e.stats.type === "symlink" ? await g.fs.readlink(e.path) : undefined;
            const label = a.Z ? `${(await readSelinuxLabel(g.fs, e.path, e.stats)) ?? "?"} ` : "";
            lines.push(a.l ? lsLine(`${label}${e.path}`, e.stats, target) : `${label}${e.path}`);
            if (lines.length >= 4096) {
              ctx.io.out(`${lines.join("\n")}\n`);
              lines = [];
            }
          }
        if (lines.length) ctx.io.out(`${lines.join("\n")}\n`);
        return;
      }
      if (a.R) {
        for await (const e of walkGuest(g.fs, root)) entries.push({ ...e });
      } else if (rootStat.type === "directory") {
        for (const n of await g.fs.readdir(root)) {
          const p = `${root === "/" ? "" : root.replace(/\/+$/, "")}/${n}`;
          entries.push({ path: p, stats: await g.fs.lstat(p) });
        }
      } else entries.push({ path: root, stats: await g.fs.lstat(root) });
      for (const e of entries) if (e.stats.type === "symlink") e.target = await g.fs.readlink(e.path);
      if (a.json || a.Z)
        for (const e of entries) labels.set(e.path, await readSelinuxLabel(g.fs, e.path, e.stats));
      if (a.json)
        return ctx.emitJson(
          entries.map((e) => ({
            ...statJson(e.path, e.stats),
            target: e.target ?? null,
            selinux: labels.get(e.path) ?? null,
          })),
        );
      ctx.io.out(
        entries
          .map((e) =>
            a.l ? lsLine(`${z(e.path)}${name(e.path)}`, e.stats, e.target) : `${z(e.path)}${name(e.path)}`,
          )
          .join("\n") + (entries.length ? "\n" : ""),
      );
    });
  },
};
