/**
 * Glue between rpm-inject and the guest: an InjectTarget over any GuestFs, and the queueing of
 * rpm-inject's deferred scriptlets (FirstbootPlan) into the shared first-boot queue.
 */
import type { FirstbootPlan, FirstbootStep, InjectTarget, NodeType, TargetStat } from "@imgpatch/rpm-inject";
import { collectGuestData } from "./data.js";
import { addFirstbootScript } from "./firstboot.js";
import { ensureDir, lstatOrNull } from "./fs-util.js";
import type { GuestFs } from "./guest-fs.js";

const secs = (d: Date) => Math.floor(d.getTime() / 1000);
const date = (s: number) => new Date(s * 1000);

/**
 * rpm-inject writes through this: final components are never followed, as rpm does. `onWritten`
 * receives the size of each regular file written (progress of a payload).
 */
export function injectTargetFromGuestFs(
  fs: GuestFs,
  name: string,
  onWritten?: (bytes: number) => void,
): InjectTarget {
  return {
    name,
    async lstat(path: string): Promise<TargetStat | undefined> {
      const st = await lstatOrNull(fs, path);
      if (!st) return undefined;
      return {
        type: st.type === "directory" ? "dir" : st.type,
        perms: st.mode,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        mtime: secs(st.mtime),
        nlink: st.nlink,
        ino: st.ino,
        rdevMajor: st.rdevMajor,
        rdevMinor: st.rdevMinor,
      };
    },
    async exists(path: string): Promise<boolean> {
      return (await lstatOrNull(fs, path)) !== null;
    },
    readlink: (path) => fs.readlink(path),
    async *readFile(path: string): AsyncIterable<Uint8Array> {
      yield await fs.readFile(path);
    },
    async mkdir(path: string, perms: number): Promise<void> {
      await fs.mkdir(path, { mode: perms, uid: 0, gid: 0 });
    },
    async writeFile(path: string, content: AsyncIterable<Uint8Array>, perms: number): Promise<void> {
      const st = await lstatOrNull(fs, path);
      if (st && st.type !== "file" && st.type !== "directory") await fs.unlink(path);
      const data = await collectGuestData(content);
      await fs.writeFile(path, data, { mode: perms });
      onWritten?.(data.length);
    },
    symlink: (target, path) => fs.symlink(target, path),
    link: (existing, path) => fs.link(existing, path),
    mknod: (path: string, type: NodeType, perms: number, major: number, minor: number) =>
      fs.mknod(path, type, perms, major, minor),
    chown: (path, uid, gid) => fs.lchown(path, uid, gid),
    async chmod(path: string, perms: number): Promise<void> {
      if ((await lstatOrNull(fs, path))?.type === "symlink") return; // link modes mean nothing
      await fs.chmod(path, perms);
    },
    utimes: (path, atime, mtime) => fs.lutimes(path, date(atime), date(mtime)),
    setxattr: (path, n, value) => fs.setxattr(path, n, value),
    rename: (from, to) => fs.rename(from, to),
    unlink: (path) => fs.unlink(path),
    rmdir: (path) => fs.rmdir(path),
    // Lets rpm-inject read the guest's keyring (/etc/pki/rpm-gpg, /etc/yum.repos.d) for signatures.
    readdir: (path) => fs.readdir(path),
  };
}

export const FIRSTBOOT_STEPS_DIR = "/usr/lib/imgpatch/firstboot/steps";

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The queue script of one step: runs its interpreter on the stored body, with rpm's arguments. */
export function firstbootStepScript(step: FirstbootStep, bodyPath: string): string {
  const what = `${step.phase}${step.package ? ` of ${step.package}` : ""}`;
  const body = `"\${IMGPATCH_FIRSTBOOT_ROOT:-}"${q(bodyPath)}`;
  if (step.lua) {
    // rpm ≥ 4.17 ships rpmlua, the interpreter rpm embeds for Lua scriptlets.
    return `#!/bin/sh
# imgpatch: ${what} (Lua scriptlet)
if ! command -v rpmlua >/dev/null 2>&1; then
  echo "imgpatch: cannot run Lua scriptlet ${step.name}: rpmlua is not installed" >&2
  exit 1
fi
exec rpmlua ${body} ${step.args.map(q).join(" ")}
`;
  }
  const argv = step.interpreter.length > 0 ? step.interpreter : ["/bin/sh"];
  return `#!/bin/sh
# imgpatch: ${what}
exec ${argv.map(q).join(" ")} ${body} ${step.args.map(q).join(" ")}
`;
}

/** Queues every step of a plan, in order, behind whatever is already queued. Returns queue paths. */
export async function queueFirstbootPlan(fs: GuestFs, plan: FirstbootPlan): Promise<string[]> {
  const out: string[] = [];
  if (plan.steps.length === 0) return out;
  await ensureDir(fs, FIRSTBOOT_STEPS_DIR, 0o700);
  for (const step of plan.steps) {
    const safe = step.name.replace(/[^A-Za-z0-9._-]+/g, "-");
    const bodyPath = `${FIRSTBOOT_STEPS_DIR}/${safe}`;
    await fs.writeFile(bodyPath, step.body, { mode: 0o700, uid: 0, gid: 0 });
    out.push(await addFirstbootScript(fs, safe, firstbootStepScript(step, bodyPath)));
  }
  return out;
}
