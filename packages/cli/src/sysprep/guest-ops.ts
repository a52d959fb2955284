/**
 * The handful of libguestfs calls virt-sysprep's operations are written with (glob_expand, rm,
 * rm_f, rm_rf, truncate, write, touch, and the tools' rm_rf_only_files), over a GuestFs, each
 * recording what it changed. Their error behaviour is libguestfs': `rm` refuses directories and
 * missing paths (the operations ignore that), `rm_rf` removes anything, never following symlinks.
 */

import { globComponentToRegExp, hasGlobChars } from "../customize/glob.js";
import { removeTree } from "../customize/tree-ops.js";
import { lstatOrNull, statOrNull } from "../guest/fs-util.js";
import type { GuestFs, GuestStats } from "../guest/guest-fs.js";
import { splitGuestPath } from "../guest/paths.js";
import { SysprepGuestError } from "./user-account.js";

/** Guest paths below a directory walked by rm_rf_only_files / backup-files (bounded on hostile images). */
export const MAX_FIND = 1_000_000;

export class SysprepFs {
  /** What changed, one line per path: "delete P", "truncate P", "write P", "touch P". */
  readonly changes: string[] = [];

  constructor(
    readonly fs: GuestFs,
    private readonly now?: Date,
  ) {}

  /**
   * glob(3) as libguestfs' glob_expand runs it: `*`, `?`, `[...]` within one component, names
   * starting with "." only for a pattern starting with "."; directories are entered through
   * symlinks (opendir follows them), resolved inside the guest. Sorted like glob(3).
   */
  async glob(pattern: string): Promise<string[]> {
    let current = ["/"];
    for (const part of splitGuestPath(pattern)) {
      const next: string[] = [];
      for (const dir of current) {
        const base = dir === "/" ? "" : dir;
        if (!hasGlobChars(part)) {
          if (await lstatOrNull(this.fs, `${base}/${part}`)) next.push(`${base}/${part}`);
          continue;
        }
        if ((await statOrNull(this.fs, dir))?.type !== "directory") continue;
        const re = globComponentToRegExp(part);
        for (const name of await this.fs.readdir(dir)) {
          if (name.startsWith(".") && !part.startsWith(".")) continue;
          if (re.test(name)) next.push(`${base}/${name}`);
        }
      }
      current = next;
    }
    return current.filter((p) => p !== "/").sort();
  }

  lstat(path: string): Promise<GuestStats | null> {
    return lstatOrNull(this.fs, path);
  }

  async isFile(path: string): Promise<boolean> {
    return (await lstatOrNull(this.fs, path))?.type === "file";
  }

  async isDir(path: string): Promise<boolean> {
    return (await lstatOrNull(this.fs, path))?.type === "directory";
  }

  /** `rm`: a non-directory; false (nothing done) for a directory or a missing path. */
  async rm(path: string): Promise<boolean> {
    const st = await lstatOrNull(this.fs, path);
    if (!st || st.type === "directory") return false;
    await this.fs.unlink(path);
    this.changes.push(`delete ${path}`);
    return true;
  }

  /** `rm_rf`: whatever is there, recursively; a symlink is removed, never followed. */
  async rmRf(path: string): Promise<void> {
    if (!(await lstatOrNull(this.fs, path))) return;
    const n = await removeTree(this.fs, path);
    this.changes.push(`delete ${path}${n > 1 ? ` (${n} entries)` : ""}`);
  }

  /** Each match of each glob with `rm_rf`. */
  async rmRfGlobs(globs: readonly string[]): Promise<void> {
    for (const g of globs) for (const p of await this.glob(g)) await this.rmRf(p);
  }

  /** Each match of each glob with `rm` (directories are left, as the operations' ignored errors do). */
  async rmGlobs(globs: readonly string[]): Promise<void> {
    for (const g of globs) for (const p of await this.glob(g)) await this.rm(p);
  }

  /**
   * rm_rf_only_files: every regular file below DIR (when DIR is a directory, not a symlink to
   * one) is removed, except those `keep` selects; directories and symlinks stay.
   */
  async rmRfOnlyFiles(dir: string, keep?: (path: string) => boolean): Promise<void> {
    const root = dir.length > 1 ? dir.replace(/\/+$/, "") : dir;
    if (!(await this.isDir(root))) return;
    const files: string[] = [];
    const stack = [root];
    let seen = 0;
    while (stack.length > 0) {
      const d = stack.pop() as string;
      for (const name of await this.fs.readdir(d)) {
        if (++seen > MAX_FIND)
          throw new SysprepGuestError(`sysprep: more than ${MAX_FIND} entries under ${root}`, root);
        const p = `${d === "/" ? "" : d}/${name}`;
        const st = await this.fs.lstat(p);
        if (st.type === "directory") stack.push(p);
        else if (st.type === "file" && !keep?.(p)) files.push(p);
      }
    }
    for (const f of files.sort()) await this.rm(f);
  }

  /** `truncate`: the file becomes empty (inode, mode, owner and labels kept). */
  async truncate(path: string): Promise<void> {
    await this.fs.writeFile(path, new Uint8Array(0), { mtime: this.now });
    this.changes.push(`truncate ${path}`);
  }

  /** `write` over an existing or new file (an existing one keeps its inode, mode and labels). */
  async write(path: string, content: string | Uint8Array, mode?: number): Promise<void> {
    await this.fs.writeFile(path, content, {
      mtime: this.now,
      mode,
      uid: mode ? 0 : undefined,
      gid: mode ? 0 : undefined,
    });
    this.changes.push(`write ${path}`);
  }

  /** `touch`: creates an empty 0644 file (libguestfs' daemon umask 022), or only sets its times. */
  async touch(path: string): Promise<boolean> {
    const parent = path.slice(0, path.lastIndexOf("/")) || "/";
    if ((await statOrNull(this.fs, parent))?.type !== "directory") return false;
    const st = await statOrNull(this.fs, path);
    const t = this.now ?? new Date();
    if (st) await this.fs.utimes(path, t, t);
    else await this.fs.writeFile(path, "", { mode: 0o644, uid: 0, gid: 0, mtime: t });
    this.changes.push(`touch ${path}`);
    return true;
  }

  /**
   * read_lines → filter → `lines.join("\n") + "\n"` as net-hostname/net-hwaddr rewrite ifcfg files;
   * the file is written only when its text changes.
   */
  async filterLines(path: string, keep: (line: string) => boolean): Promise<void> {
    const text = new TextDecoder().decode(await this.fs.readFile(path));
    const lines = text.split("\n");
    if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    const next = `${lines.filter(keep).join("\n")}\n`;
    if (next === text) return;
    await this.fs.writeFile(path, next, { mtime: this.now });
    this.changes.push(`edit ${path}`);
  }
}
