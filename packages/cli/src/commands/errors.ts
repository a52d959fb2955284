/** Exit codes of the imgpatch command and the one-line error report. */
import {
  ChecksumError,
  FormatError,
  ImgpatchError,
  UnsafeImageError,
  UnsupportedError,
} from "@imgpatch/disk";
import { CustomizeUsageError } from "../customize/operations.js";
import { GuestFsError } from "../guest/guest-fs.js";
import { GuestOpenError } from "../image/open-guest.js";
import { UsageError } from "../image/open-image.js";

/** Documented in packages/cli/README.md. */
export const EXIT = {
  ok: 0,
  /** The operation failed (I/O error, host file problem, anything not below). */
  failure: 1,
  /** Bad command line, bad operation argument, bad recipe. */
  usage: 2,
  /**
   * The image is refused: not readable as what it claims (format, checksum, unsupported
   * format/filesystem), or unsafe — it names a host file the backing policy refuses (UnsafeImageError).
   */
  badImage: 3,
  /** A guest path does not exist, is of the wrong type, or is on a filesystem we cannot edit. */
  guestPath: 4,
  /** `check` found problems. */
  checkFailed: 5,
} as const;

export function exitCodeOf(err: unknown): number {
  // A customize argument naming a guest path that is not there is a guest path error.
  if (err instanceof CustomizeUsageError && err.file?.startsWith("/")) return EXIT.guestPath;
  if (err instanceof UsageError || err instanceof CustomizeUsageError) return EXIT.usage;
  if (err instanceof GuestFsError) return EXIT.guestPath;
  if (err instanceof GuestOpenError || err instanceof UnsafeImageError) return EXIT.badImage;
  if (err instanceof FormatError || err instanceof ChecksumError || err instanceof UnsupportedError)
    return EXIT.badImage;
  if (err instanceof ImgpatchError) {
    if (err.code === "EUSAGE") return EXIT.usage;
    if (/^E(NOENT|NOTDIR|ISDIR|EXIST|LOOP|NOTEMPTY|XDEV)$/.test(err.code) && err.file?.startsWith("/")) {
      return EXIT.guestPath;
    }
  }
  return EXIT.failure;
}

/** One line: "imgpatch: IMAGE: GUESTPATH: reason" (the image only when not already named). */
export function errorLine(err: unknown, image?: string): string {
  const msg = err instanceof Error ? err.message : String(err);
  const first = msg.split("\n")[0];
  const prefix = image && !first.startsWith(image) ? `${image}: ` : "";
  return `imgpatch: ${prefix}${first}`;
}
