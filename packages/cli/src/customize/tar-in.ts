/**
 * --tar-in TARBALL:GUESTDIR: unpacks a tar archive (plain, gzip, xz, zstd or bzip2, detected from its
 * first bytes) into a guest directory, keeping modes, times, owners (names looked up in the GUEST's
 * passwd/group first, as tar does without --numeric-owner, else the numeric ids), hard and symbolic
 * links, device nodes, and xattrs carried as PAX `SCHILY.xattr.*` records.
 *
 * Safety, as GNU tar: member names are made relative ("/" and "./" stripped); names containing ".."
 * are skipped; a member whose path goes through a symlink the same archive created is skipped (the
 * classic "link then write through it" trick). Everything stays inside the guest in any case, since
 * GuestFs resolves symlinks within the guest root.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { decompress, sniffCompressor } from "@imgpatch/rpm-inject";
import tar from "tar-stream";
import type { StepProgress } from "../commands/progress.js";
import { ensureDir, lstatOrNull } from "../guest/fs-util.js";
import type { GuestFs } from "../guest/guest-fs.js";
import type { GuestIdentity } from "../guest/identity.js";

export interface TarInResult {
  entries: number;
  skipped: Array<{ name: string; why: string }>;
}

/** The host file's bytes; `onRead` gets the running total (progress of the compressed input). */
async function* readHost(path: string, onRead?: (done: number) => void): AsyncIterable<Uint8Array> {
  let done = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 16 })) {
    done += (chunk as Buffer).length;
    onRead?.(done);
    yield chunk as Buffer;
  }
}

/** Peeks the first bytes to pick the decompressor, then yields the whole stream. */
async function decompressed(
  path: string,
  onRead?: (done: number) => void,
): Promise<AsyncIterable<Uint8Array>> {
  const it = readHost(path, onRead)[Symbol.asyncIterator]();
  const first = await it.next();
  const head = first.done ? new Uint8Array(0) : first.value;
  const rest: AsyncIterable<Uint8Array> = {
    async *[Symbol.asyncIterator]() {
      if (head.length > 0) yield head;
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
    },
  };
  const kind = sniffCompressor(head);
  if (kind === undefined || kind === "none") return rest; // plain tar ("ustar" at 257) or cpio-less data
  return decompress(kind, rest, { file: path });
}

function memberPath(name: string): string | null {
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.some((p) => p === "..")) return null;
  return parts.join("/");
}

export async function tarIn(
  fs: GuestFs,
  tarball: string,
  guestDir: string,
  identity: GuestIdentity,
  progress?: StepProgress,
): Promise<TarInResult> {
  const result: TarInResult = { entries: 0, skipped: [] };
  const base = guestDir === "/" ? "" : guestDir.replace(/\/+$/, "");
  const createdLinks = new Set<string>();
  const dirTimes: Array<[string, Date]> = [];
  const extract = tar.extract();
  const total = progress ? (await stat(tarball)).size : 0;
  progress?.update(0, total);
  Readable.from(await decompressed(tarball, progress && ((d) => progress.update(d, total)))).pipe(extract);
  for await (const entry of extract) {
    const h = entry.header;
    const pax = (h.pax ?? {}) as Record<string, string>;
    const rel = memberPath(h.name);
    const skip = async (why: string) => {
      result.skipped.push({ name: h.name, why });
      entry.resume();
    };
    if (rel === null) {
      await skip('member name contains ".."');
      continue;
    }
    if (rel === "") {
      entry.resume();
      continue; // the archive's "./" itself
    }
    const path = `${base}/${rel}`;
    const prefixes = rel
      .split("/")
      .slice(0, -1)
      .map((_, i, a) => `${base}/${a.slice(0, i + 1).join("/")}`);
    if (prefixes.some((p) => createdLinks.has(p))) {
      await skip("path goes through a symlink created by this archive");
      continue;
    }
    const uid = (h.uname ? identity.user(h.uname)?.uid : undefined) ?? h.uid ?? 0;
    const gid = (h.gname ? identity.group(h.gname)?.gid : undefined) ?? h.gid ?? 0;
    const mode = (h.mode ?? 0o644) & 0o7777;
    const parent = path.slice(0, path.lastIndexOf("/")) || "/";
    await ensureDir(fs, parent);
    const existing = await lstatOrNull(fs, path);
    const mtime = h.mtime instanceof Date ? h.mtime : undefined;
    if (existing && h.type !== "directory" && existing.type !== "directory") await fs.unlink(path);
    switch (h.type) {
      case "directory":
        if (existing?.type !== "directory") {
          if (existing) await fs.unlink(path);
          await fs.mkdir(path, { mode, uid, gid });
        } else {
          await fs.chmod(path, mode);
          await fs.lchown(path, uid, gid);
        }
        entry.resume();
        if (mtime) dirTimes.push([path, mtime]);
        break;
      case "file":
      case "contiguous-file":
        await fs.writeFile(path, entry as AsyncIterable<Uint8Array>, { mode, uid, gid, mtime });
        break;
      case "symlink":
        entry.resume();
        await fs.symlink(h.linkname ?? "", path, { uid, gid });
        createdLinks.add(path);
        if (mtime) await fs.lutimes(path, mtime, mtime);
        break;
      case "link": {
        entry.resume();
        const target = memberPath(h.linkname ?? "");
        if (target === null || target === "") {
          result.skipped.push({ name: h.name, why: "hard link target invalid" });
          continue;
        }
        await fs.link(`${base}/${target}`, path);
        break;
      }
      case "character-device":
      case "block-device":
      case "fifo":
        entry.resume();
        await fs.mknod(
          path,
          h.type === "fifo" ? "fifo" : h.type === "block-device" ? "blockdev" : "chardev",
          mode,
          h.devmajor ?? 0,
          h.devminor ?? 0,
          { uid, gid },
        );
        break;
      default:
        await skip(`unsupported member type ${h.type}`);
        continue;
    }
    for (const [k, v] of Object.entries(pax)) {
      if (k.startsWith("SCHILY.xattr."))
        await fs.setxattr(path, k.slice("SCHILY.xattr.".length), Buffer.from(v, "latin1"));
    }
    result.entries++;
  }
  // Directory times last, since creating their entries changed them.
  for (const [p, t] of dirTimes.reverse()) await fs.utimes(p, t, t);
  return result;
}
