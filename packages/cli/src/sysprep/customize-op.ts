/**
 * The `customize` operation's own effects, before the customize operations given on the command
 * line (virt-customize's Customize_run.run does these on every run, sysprep included):
 *  - a random seed: each existing seed file (/var/lib/random-seed, /var/lib/systemd/random-seed,
 *    /var/lib/urandom/random-seed, /var/lib/misc/random-seed, /etc/random-seed) gets
 *    min(max(size, 512), 8192) fresh random bytes, its inode and mode kept; when none exists the
 *    distribution's usual one is created (512 bytes, root 0600) if its directory exists;
 *  - /etc/machine-id, when it is an empty regular file, gets a new random id. In the default set
 *    machine-id (which empties it) runs first, so the image ends with a fresh id, as with
 *    virt-sysprep 1.48; leave `customize` out (`--operations defaults,-customize`) to keep it empty.
 */
import { randomBytes } from "node:crypto";
import { DEBIAN_FAMILY, RED_HAT_FAMILY } from "./inspect.js";
import type { SysprepContext } from "./types.js";

const SEED_FILES = [
  "/var/lib/random-seed",
  "/var/lib/systemd/random-seed",
  "/var/lib/urandom/random-seed",
  "/var/lib/misc/random-seed",
  "/etc/random-seed",
];

function fallbackSeedFile(distro: string): string | undefined {
  if (RED_HAT_FAMILY.has(distro)) return "/var/lib/random-seed";
  if (DEBIAN_FAMILY.has(distro)) return "/var/lib/urandom/random-seed";
  if (distro === "opensuse" || distro === "sles") return "/var/lib/misc/random-seed";
  if (distro === "cirros") return "/etc/random-seed";
  return undefined;
}

export async function customizeBase(ctx: SysprepContext): Promise<void> {
  const { sfs } = ctx;
  let created = false;
  for (const f of SEED_FILES) {
    const st = await sfs.lstat(f);
    if (st?.type !== "file") continue;
    await sfs.write(f, new Uint8Array(randomBytes(Math.min(Math.max(st.size, 512), 8192))));
    created = true;
  }
  if (!created) {
    const f = fallbackSeedFile(ctx.inspection.distro);
    if (f && (await sfs.isDir(f.slice(0, f.lastIndexOf("/"))))) {
      await sfs.write(f, new Uint8Array(randomBytes(512)), 0o600);
      created = true;
    }
  }
  if (!created) ctx.notes.push("customize: random seed could not be set for this type of guest");
  const mid = await sfs.lstat("/etc/machine-id");
  if (mid?.type === "file" && mid.size === 0)
    await sfs.write("/etc/machine-id", `${Buffer.from(randomBytes(16)).toString("hex")}\n`);
}
