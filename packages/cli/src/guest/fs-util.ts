/** Small helpers over GuestFs used by the customisation modules. */
import { type GuestFs, type GuestStats, isGuestError } from "./guest-fs.js";

export async function lstatOrNull(fs: GuestFs, path: string): Promise<GuestStats | null> {
  try {
    return await fs.lstat(path);
  } catch (err) {
    if (isGuestError(err, "ENOENT") || isGuestError(err, "ENOTDIR")) return null;
    throw err;
  }
}

export async function statOrNull(fs: GuestFs, path: string): Promise<GuestStats | null> {
  try {
    return await fs.stat(path);
  } catch (err) {
    if (isGuestError(err, "ENOENT") || isGuestError(err, "ENOTDIR") || isGuestError(err, "ELOOP"))
      return null;
    throw err;
  }
}

export async function readTextOrNull(fs: GuestFs, path: string): Promise<string | null> {
  try {
    return new TextDecoder().decode(await fs.readFile(path));
  } catch (err) {
    if (isGuestError(err, "ENOENT") || isGuestError(err, "ENOTDIR")) return null;
    throw err;
  }
}

/** mkdir -p where every created directory gets `mode` and root ownership unless told otherwise. */
export async function ensureDir(fs: GuestFs, path: string, mode = 0o755, uid = 0, gid = 0): Promise<void> {
  await fs.mkdir(path, { recursive: true, mode, uid, gid });
}
