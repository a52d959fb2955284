/** Guest path helpers: absolute, "/"-separated, already normalized paths. */

/** Longest path we accept (Linux PATH_MAX). */
export const MAX_PATH = 4096;
/** Longest single component (NAME_MAX). */
export const MAX_NAME = 255;

/** Components of an already-normalized guest path ("/" → []). */
export function splitGuestPath(path: string): string[] {
  return path.split("/").filter((c) => c !== "");
}

export function guestDirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

export function guestBasename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function joinGuestPath(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}
