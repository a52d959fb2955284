/**
 * Where a sparse host file holds data. Node's fs has no lseek(SEEK_DATA/SEEK_HOLE) and no ioctl, so
 * a raw image's holes would be read (as zeros) to be found. e2fsprogs' `filefrag` (present wherever
 * e2fsprogs is, i.e. nearly every Linux system) prints the file's FIEMAP extents; when it is missing,
 * fails, or prints what we do not recognise, the caller treats the whole file as data, as before.
 *
 * `filefrag -v -b512` output (e2fsprogs 1.42–1.47), one line per extent, units of 512 bytes:
 *
 * | column          | example              | use                                          |
 * |-----------------|----------------------|----------------------------------------------|
 * | ext             | `0:`                 | extent index, counts the lines               |
 * | logical_offset  | `12800..   13183:`   | first..last sector of the file (inclusive)   |
 * | physical_offset | `0..     0:`         | ignored                                      |
 * | length          | `0:`                 | ignored (0 for delayed-allocation extents)   |
 * | flags           | `last,delalloc`      | ignored: every listed extent counts as data  |
 *
 * and a final "FILE: N extents found" that must match the lines parsed.
 */
import { execFile } from "node:child_process";

export interface HostDataRange {
  offset: number;
  length: number;
}

const EXTENT_LINE = /^\s*(\d+):\s+(\d+)\.\.\s*(\d+):/;
const FOUND_LINE = /: (\d+) extents? found\s*$/;

/** Parses `filefrag -v -b512` output; undefined when it is not what the table above describes. */
export function parseFilefrag(text: string): HostDataRange[] | undefined {
  const out: HostDataRange[] = [];
  let found: number | undefined;
  for (const line of text.split("\n")) {
    const m = EXTENT_LINE.exec(line);
    if (m) {
      const first = Number(m[2]);
      const last = Number(m[3]);
      if (Number(m[1]) !== out.length || last < first || !Number.isSafeInteger(last * 512)) return undefined;
      out.push({ offset: first * 512, length: (last - first + 1) * 512 });
      continue;
    }
    const f = FOUND_LINE.exec(line);
    if (f) found = Number(f[1]);
  }
  if (found !== out.length) return undefined;
  out.sort((a, b) => a.offset - b.offset);
  return out;
}

/** The data ranges of the regular file at `path` (sorted), or undefined when they cannot be known. */
export function hostDataRanges(path: string): Promise<HostDataRange[] | undefined> {
  return new Promise((resolve) => {
    execFile(
      "filefrag",
      ["-v", "-b512", "--", path],
      { env: { ...process.env, LC_ALL: "C" }, maxBuffer: 256 << 20, timeout: 60_000 },
      (err, stdout) => resolve(err ? undefined : parseFilefrag(stdout)),
    );
  });
}
