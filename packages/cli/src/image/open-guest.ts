/**
 * openGuest: an image file → a GuestFs over its mounted filesystems, plus the output plumbing.
 *
 * Output modes (the input is never written unless `inPlace`):
 *  - none: read-only; writes fail with EPERM saying how to ask for an output.
 *  - `overlay: OUT`: edits go to a new qcow2 whose backing file is the input (path stored relative
 *    to OUT's directory), created under a temporary name next to OUT and renamed by commit().
 *  - `output: OUT`: a full image (qcow2 or raw, optionally compressed): edits go to a temporary
 *    overlay, commit() converts overlay+input into a temporary OUT and renames it.
 *  - `inPlace: true`: the input itself is opened writable, with an undo log beside it
 *    (IMAGE.imgpatch-undo: original bytes saved before their first overwrite, fsynced first).
 *    A failed or abandoned run is rolled back from it (the input ends byte-identical); after a
 *    crash the file stays, later opens refuse the image and `rollbackInPlace` restores it.
 * A failed or abandoned run (close() without commit()) removes every temporary file.
 */
import { randomBytes } from "node:crypto";
import { realpath, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import {
  type BlockDevice,
  type DiskInspection,
  FileDevice,
  ImgpatchError,
  inspectDisk,
  RangeDevice,
  rollbackUndo,
  UndoLog,
  undoPathFor,
  type VolumeInspection,
} from "@imgpatch/disk";
import { Ext4Editor, Ext4Fs, type Ext4OpenOptions } from "@imgpatch/ext4";
import { convertImage, createOverlay } from "@imgpatch/qcow2";
import { XfsEditor, XfsFs, type XfsOpenOptions } from "@imgpatch/xfs";
import type { GuestFs } from "../guest/guest-fs.js";
import { GuestIdentity } from "../guest/identity.js";
import { normalizeGuestPath } from "../guest/paths.js";
import { SelinuxLabelingGuestFs } from "../guest/selinux-labeler.js";
import { Ext4GuestFs } from "./ext4-guest-fs.js";
import { findVolume, parseFstab, volumeName } from "./fstab.js";
import { type GuestMount, MountedGuestFs } from "./mount-fs.js";
import { type DiskFormat, formatFromName, openImage, UsageError } from "./open-image.js";
import { type OsRelease, parseOsRelease } from "./os-release.js";
import { XfsGuestFs } from "./xfs-guest-fs.js";

export type OutputMode = "read-only" | "overlay" | "output" | "in-place";

export interface OpenGuestOptions {
  /** Input format (default: detected). */
  format?: DiskFormat;
  /** `DEV:MOUNTPOINT` like guestfish -m (DEV: partition number, /dev/sdaN, /dev/vdaN, UUID=…, LABEL=…). Disables fstab. */
  mounts?: readonly string[];
  /** Write a qcow2 overlay over the input here. */
  overlay?: string;
  /** Write a full new image here. */
  output?: string;
  /** Format of `output` (default: from its extension, .qcow2 → qcow2, .img/.raw → raw, else the input's). */
  outputFormat?: DiskFormat;
  /** Compress `output` (qcow2 only). */
  compress?: boolean;
  /** Edit the input itself. */
  inPlace?: boolean;
  /**
   * Backing policy: directories (besides the image's own) whose files the image's backing chain
   * and external data file may name (`--allow-backing`). A link elsewhere, into /proc, /sys,
   * /dev, to a non-regular file or a protocol is refused with UnsafeImageError.
   */
  allowBacking?: readonly string[];
  /**
   * Timestamp for every inode time the editor sets (reproducible outputs). Default: the editor's,
   * i.e. SOURCE_DATE_EPOCH from the environment when set, else the clock.
   */
  now?: Date;
  /**
   * Label what is written with the guest's own SELinux policy when it is active (default true;
   * see guest/selinux-labeler.ts). false: write no labels.
   */
  selinuxLabels?: boolean;
  /**
   * @internal Tests only: wrap the device the guest is edited through (failure injection), and
   * simulate a crash by skipping the rollback of a failed in-place run.
   */
  testHooks?: { wrapDevice?: (device: BlockDevice) => BlockDevice; skipRollback?: boolean };
}

export interface GuestMountInfo {
  mountpoint: string;
  source: string;
  /** fstab spec it came from, when it did. */
  spec?: string;
  editable: boolean;
  reason?: string;
}

export interface Guest {
  fs: GuestFs;
  image: string;
  format: DiskFormat;
  mode: OutputMode;
  /** Where the result goes (overlay/output path, the input for in-place). */
  target?: string;
  disk: DiskInspection;
  mounts: GuestMountInfo[];
  /** /etc/os-release of the root filesystem ({} when absent). */
  os: OsRelease;
  warnings: string[];
  identity(): Promise<GuestIdentity>;
  /**
   * Writes everything out (and renames temporary outputs). After it the guest is closed.
   * `onProgress` follows the copy into a full output (-o), the step that takes long.
   */
  commit(options?: CommitOptions): Promise<{ output?: string }>;
  /** Closes; without commit(), removes temporary outputs. Safe to call twice. */
  close(): Promise<void>;
}

export interface CommitOptions {
  /** Bytes of the image written to a full output so far, of its virtual size. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Runs once every filesystem editor has synced and before the final flush, with the devices of
   * the edited volumes: whole-volume edits below the filesystem layer (sysprep's fs-uuids). The
   * editors are not used afterwards. Within the run's undo log / temporary output like any write.
   */
  afterSync?: (volumes: EditedVolume[]) => Promise<void>;
}

/** An edited volume as CommitOptions.afterSync sees it. */
export interface EditedVolume {
  /** "partition 2" or "whole disk" (as messages name it). */
  name: string;
  type: "ext4" | "xfs";
  device: BlockDevice;
}

/** An unfinished in-place run left its undo file: the image may be half-edited. */
export class UndoPendingImageError extends ImgpatchError {
  constructor(image: string) {
    super(
      "EUNDOPENDING",
      `an unfinished --in-place run left ${undoPathFor(image)}: the image may be half-edited; restore it with "imgpatch rollback ${image}" (or delete that file to keep the image as it is)`,
      { file: image },
    );
  }
}

/** Restores an image from the undo file an unfinished in-place run left; false when there is none. */
export async function rollbackInPlace(image: string): Promise<{ records: number; size: number } | false> {
  const undo = undoPathFor(image);
  if (
    !(await stat(undo).then(
      () => true,
      () => false,
    ))
  )
    return false;
  return rollbackUndo(image, undo);
}

/** The image holds no guest we can open (no ext2/3/4 or XFS filesystem, no root among several). */
export class GuestOpenError extends ImgpatchError {
  constructor(message: string, file?: string) {
    super("ENOGUEST", message, { file });
  }
}

function tempName(target: string, tag: string): string {
  return join(
    dirname(target),
    `.${basename(target)}.${tag}-${process.pid}-${randomBytes(4).toString("hex")}.tmp`,
  );
}

async function samePath(a: string, b: string): Promise<boolean> {
  const ra = await realpath(a).catch(() => resolve(a));
  const rb = await realpath(b).catch(() => resolve(b));
  return ra === rb;
}

interface OpenVolume {
  volume: VolumeInspection;
  /** The editor, when the volume is edited: commit() syncs it. */
  editor?: { sync(): Promise<void> };
  guestFs?: Ext4GuestFs | XfsGuestFs;
  /** The volume's own device (its partition's range) when it is edited. */
  device?: BlockDevice;
}

/**
 * Opens an XFS volume: with the editor when writable (a volume the editor refuses — a dirty log,
 * an unknown ro_compat feature — is opened with the reader and its writes name the reason), else
 * with the reader.
 */
async function openXfsVolume(
  volume: VolumeInspection,
  dev: BlockDevice,
  readOnly: boolean,
  readOnlyReason: string | undefined,
  warnings: string[],
  now: Date | undefined,
): Promise<OpenVolume> {
  const onWarning: XfsOpenOptions["onWarning"] = (w) => warnings.push(`${volumeName(volume)}: ${w.message}`);
  let why = readOnlyReason;
  if (!readOnly) {
    try {
      const editor = await XfsEditor.open(dev, { onWarning, timestamp: now });
      return { volume, editor, guestFs: new XfsGuestFs(editor), device: dev };
    } catch (err) {
      why = `${volumeName(volume)} cannot be edited: ${(err as Error).message}`;
    }
  }
  try {
    const xfs = await XfsFs.open(dev, { onWarning });
    return { volume, guestFs: new XfsGuestFs(xfs, { readOnlyReason: why ?? "read-only" }) };
  } catch (err) {
    warnings.push(`${volumeName(volume)}: cannot open: ${(err as Error).message}`);
    return { volume };
  }
}

/** Opens every recognised ext2/3/4 and XFS volume (read views for probing; the same objects are used for editing). */
async function openVolumes(
  device: BlockDevice,
  disk: DiskInspection,
  readOnly: boolean,
  readOnlyReason: string | undefined,
  image: string,
  warnings: string[],
  now: Date | undefined,
): Promise<OpenVolume[]> {
  const out: OpenVolume[] = [];
  for (const volume of disk.volumes) {
    if (!volume.filesystem?.supported || volume.error) {
      out.push({ volume });
      continue;
    }
    const p = volume.partition;
    const dev = p
      ? new RangeDevice(device, p.start, p.size, { name: `${image}:p${p.number}`, readOnly })
      : device;
    if (volume.filesystem.type === "xfs") {
      out.push(await openXfsVolume(volume, dev, readOnly, readOnlyReason, warnings, now));
      continue;
    }
    const onWarning: Ext4OpenOptions["onWarning"] = (w) =>
      warnings.push(`${volumeName(volume)}: ${w.message}`);
    if (!readOnly) {
      try {
        // A journal left by a crash is replayed into the output first, as e2fsck would (the input
        // itself is only written with --in-place, under its undo log).
        const editor = await Ext4Editor.open(dev, { onWarning, timestamp: now, replayJournal: true });
        out.push({ volume, editor, guestFs: new Ext4GuestFs(editor), device: dev });
        continue;
      } catch (err) {
        // Readable but not editable (a feature the editor refuses, a journal to recover...):
        // reads work, writes name the reason.
        const why = `${volumeName(volume)} cannot be edited: ${(err as Error).message}`;
        try {
          const ext4 = await Ext4Fs.open(dev, { onWarning });
          out.push({ volume, guestFs: new Ext4GuestFs(ext4, { readOnlyReason: why }) });
        } catch (err2) {
          warnings.push(`${volumeName(volume)}: cannot open: ${(err2 as Error).message}`);
          out.push({ volume });
        }
        continue;
      }
    }
    try {
      const ext4 = await Ext4Fs.open(dev, { onWarning });
      out.push({ volume, guestFs: new Ext4GuestFs(ext4, { readOnlyReason }) });
    } catch (err) {
      warnings.push(`${volumeName(volume)}: cannot open: ${(err as Error).message}`);
      out.push({ volume });
    }
  }
  return out;
}

async function hasOsRelease(fs: GuestFs): Promise<boolean> {
  for (const p of ["/etc/os-release", "/usr/lib/os-release"]) {
    try {
      const st = await fs.stat(p);
      if (st.type === "file") return true;
    } catch {
      // absent
    }
  }
  return false;
}

function splitMountArg(arg: string): { dev: string; mountpoint: string } {
  const i = arg.indexOf(":/");
  if (i <= 0) throw new UsageError(`-m expects DEV:MOUNTPOINT (e.g. /dev/sda3:/ or 3:/), got "${arg}"`);
  return { dev: arg.slice(0, i), mountpoint: normalizeGuestPath(arg.slice(i + 1)) };
}

function mountFor(
  v: OpenVolume,
  mountpoint: string,
  spec?: string,
): { mount: GuestMount; info: GuestMountInfo } {
  const source = volumeName(v.volume);
  if (v.guestFs) {
    return {
      mount: { mountpoint, fs: v.guestFs, source },
      info: { mountpoint, source, spec, editable: v.guestFs.writable },
    };
  }
  const reason = v.volume.filesystem
    ? `${source} — ${v.volume.filesystem.type} is not supported (imgpatch edits ext2, ext3, ext4 and XFS)`
    : `${source} — no recognisable filesystem`;
  return {
    mount: { mountpoint, source, unsupported: reason },
    info: { mountpoint, source, spec, editable: false, reason },
  };
}

/** Opens a guest; see the module comment for the output modes. */
export async function openGuest(image: string, options: OpenGuestOptions = {}): Promise<Guest> {
  const modes = [options.overlay !== undefined, options.output !== undefined, options.inPlace === true];
  if (modes.filter(Boolean).length > 1) {
    throw new UsageError("choose one of --overlay OUT, -o OUT and --in-place", image);
  }
  if (options.compress && options.output === undefined)
    throw new UsageError("-c/--compress needs -o OUT", image);
  const st = await stat(image).catch(() => undefined);
  if (!st) throw new UsageError("no such image file", image);
  if (!st.isFile() && !st.isBlockDevice()) throw new UsageError("not a regular file", image);
  const mode: OutputMode =
    options.overlay !== undefined
      ? "overlay"
      : options.output !== undefined
        ? "output"
        : options.inPlace
          ? "in-place"
          : "read-only";
  const target = options.overlay ?? options.output ?? (options.inPlace ? image : undefined);
  if (mode === "overlay" || mode === "output") {
    const dir = dirname(resolve(target as string));
    if (
      !(await stat(dir).then(
        (d) => d.isDirectory(),
        () => false,
      ))
    ) {
      throw new UsageError(`output directory ${dir} does not exist`, target);
    }
  }
  if ((mode === "overlay" || mode === "output") && (await samePath(target as string, image))) {
    throw new UsageError(`the output ${target} is the input image; use --in-place to edit it`, image);
  }

  const pendingUndo = await stat(undoPathFor(image)).then(
    () => true,
    () => false,
  );
  if (pendingUndo && mode !== "read-only") throw new UndoPendingImageError(image);

  const temps: string[] = [];
  const devices: BlockDevice[] = [];
  let undo: UndoLog | undefined;
  /** Closes everything; an in-place run that did not commit is rolled back from its undo log. */
  const cleanup = async () => {
    for (const d of devices.reverse()) await d.close().catch(() => {});
    devices.length = 0;
    for (const t of temps) await rm(t, { force: true }).catch(() => {});
    if (undo) {
      const log = undo;
      undo = undefined;
      if (!log.touched) {
        // nothing was written to the image (e.g. it failed to open): no rollback, which could
        // itself fail (a read-only image) and leave an undo file behind
        await log.discard().catch(() => {});
        return;
      }
      await log.close().catch(() => {});
      if (options.testHooks?.skipRollback) return;
      try {
        await rollbackUndo(image, log.path);
      } catch (err) {
        throw new ImgpatchError(
          "EROLLBACK",
          `the run failed and rolling the image back failed too (${(err as Error).message}); the undo file ${log.path} is kept: retry with "imgpatch rollback ${image}"`,
          { file: image },
          { cause: err },
        );
      }
    }
  };

  try {
    if (mode === "in-place") {
      // a block device's stat size is 0: ask the device
      const size = st.isFile() ? st.size : await deviceSize(image);
      undo = await UndoLog.create(image, size);
    }
    const input = await openImage(image, {
      format: options.format,
      readOnly: mode !== "in-place",
      undo,
      allowBacking: options.allowBacking,
    });
    let device: BlockDevice = input.device;
    devices.push(input.device);
    let overlayTemp: string | undefined;
    if (mode === "overlay" || mode === "output") {
      // The overlay stands next to its final name so the relative backing path stays valid.
      const where = target as string;
      overlayTemp = tempName(where, mode === "overlay" ? "overlay" : "edit");
      temps.push(overlayTemp);
      const backing =
        mode === "overlay" ? relativeBacking(dirname(resolve(where)), resolve(image)) : resolve(image);
      // The read-only input is no longer needed: the overlay opens its own backing chain.
      await input.device.close();
      devices.length = 0;
      // The chain below the overlay keeps the input's policy: the input itself (the user named it)
      // and its directory, not the output's directory.
      device = await createOverlay(overlayTemp, backing, {
        backingFormat: input.format,
        backingRoot: dirname(resolve(image)),
        allowBacking: [resolve(image), ...(options.allowBacking ?? [])],
      });
      devices.push(device);
    }

    const wrap = options.testHooks?.wrapDevice;
    if (wrap) {
      device = wrap(device);
      devices[devices.length - 1] = device;
    }
    const readOnly = mode === "read-only";
    const readOnlyReason = readOnly
      ? "the image is opened read-only: give --overlay OUT, -o OUT or --in-place to change it"
      : undefined;
    const warnings: string[] = [...input.warnings];
    if (pendingUndo) warnings.push(`${new UndoPendingImageError(image).message.replace(`${image}: `, "")}`);
    const disk = await inspectDisk(device);
    const vols = await openVolumes(device, disk, readOnly, readOnlyReason, image, warnings, options.now);
    const { mounts, infos } = await chooseMounts(vols, options.mounts, image, warnings);
    const mounted: GuestFs = mounts.length === 1 && mounts[0].fs ? mounts[0].fs : new MountedGuestFs(mounts);
    const labeler =
      readOnly || options.selinuxLabels === false ? undefined : await SelinuxLabelingGuestFs.open(mounted);
    const fs: GuestFs = labeler ?? mounted;
    let os: OsRelease = {};
    for (const p of ["/etc/os-release", "/usr/lib/os-release"]) {
      try {
        os = parseOsRelease(new TextDecoder().decode(await fs.readFile(p)));
        break;
      } catch {
        // absent
      }
    }
    let identity: GuestIdentity | undefined;
    let closed = false;
    const flushAll = async () => {
      for (const v of vols) if (v.editor) await v.editor.sync();
      await device.flush();
    };
    const guest: Guest = {
      fs,
      image,
      format: input.format,
      mode,
      target,
      disk,
      mounts: infos,
      os,
      warnings,
      async identity() {
        identity ??= await GuestIdentity.load(fs);
        return identity;
      },
      async commit(commitOptions: CommitOptions = {}) {
        if (closed) throw new UsageError("guest already closed", image);
        try {
          if (mode === "read-only") {
            await cleanup();
            return {};
          }
          await labeler?.flushLabels();
          await flushAll();
          if (commitOptions.afterSync) {
            const edited: EditedVolume[] = [];
            for (const v of vols)
              if (v.editor && v.device)
                edited.push({
                  name: volumeName(v.volume),
                  type: v.volume.filesystem?.type === "xfs" ? "xfs" : "ext4",
                  device: v.device,
                });
            await commitOptions.afterSync(edited);
            await device.flush();
          }
          if (mode === "in-place") {
            for (const d of devices.reverse()) await d.close();
            devices.length = 0;
            // everything reached the image and was fsynced by the flush: the undo log can go
            await undo?.discard();
            undo = undefined;
            return { output: image };
          }
          if (mode === "overlay") {
            for (const d of devices.reverse()) await d.close();
            devices.length = 0;
            await rename(overlayTemp as string, target as string);
            temps.splice(temps.indexOf(overlayTemp as string), 1);
            return { output: target };
          }
          const outFormat = options.outputFormat ?? formatFromName(target as string) ?? input.format;
          const outTemp = tempName(target as string, "out");
          temps.push(outTemp);
          await convertImage(device, outTemp, {
            format: outFormat,
            compress: options.compress,
            overwrite: true,
            onProgress: commitOptions.onProgress,
          });
          await rename(outTemp, target as string);
          temps.splice(temps.indexOf(outTemp), 1);
          await cleanup();
          return { output: target };
        } catch (err) {
          await cleanup();
          throw err;
        } finally {
          closed = true;
        }
      },
      async close() {
        if (closed) return;
        closed = true;
        await cleanup();
      },
    };
    return guest;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function deviceSize(path: string): Promise<number> {
  const d = await FileDevice.open(path, { readOnly: true });
  try {
    return d.size;
  } finally {
    await d.close();
  }
}

function relativeBacking(fromDir: string, file: string): string {
  const rel = relative(fromDir, file);
  return rel === "" || isAbsolute(rel) ? file : rel;
}

async function chooseMounts(
  vols: OpenVolume[],
  requested: readonly string[] | undefined,
  image: string,
  warnings: string[],
): Promise<{ mounts: GuestMount[]; infos: GuestMountInfo[] }> {
  const mounts: GuestMount[] = [];
  const infos: GuestMountInfo[] = [];
  const volumes = vols.map((v) => v.volume);
  const add = (v: OpenVolume, mp: string, spec?: string) => {
    if (mounts.some((m) => m.mountpoint === mp)) {
      warnings.push(`${mp} is mounted twice; the later mount (${spec ?? volumeName(v.volume)}) is ignored`);
      return;
    }
    const { mount, info } = mountFor(v, mp, spec);
    mounts.push(mount);
    infos.push(info);
  };
  if (requested && requested.length > 0) {
    for (const arg of requested) {
      const { dev, mountpoint } = splitMountArg(arg);
      const vol = findVolume(dev, volumes);
      if (!vol)
        throw new UsageError(
          `-m ${arg}: no volume ${dev} on this disk (${volumes.map(volumeName).join(", ")})`,
          image,
        );
      const v = vols[volumes.indexOf(vol)];
      if (mountpoint === "/" && !v.guestFs) {
        throw new GuestOpenError(`-m ${arg}: ${mountFor(v, "/").info.reason}`, image);
      }
      add(v, mountpoint, dev);
    }
    if (!mounts.some((m) => m.mountpoint === "/")) throw new UsageError("-m: no mount for / given", image);
    return { mounts, infos };
  }

  const candidates = vols.filter((v) => v.guestFs);
  if (candidates.length === 0) {
    throw new GuestOpenError(
      `no ext2/ext3/ext4/XFS filesystem found (${volumes.map(volumeName).join(", ") || "no volumes"})`,
      image,
    );
  }
  const withOs: OpenVolume[] = [];
  for (const v of candidates) if (await hasOsRelease(v.guestFs as GuestFs)) withOs.push(v);
  let root: OpenVolume;
  if (withOs.length >= 1) {
    root = withOs[0];
    if (withOs.length > 1) {
      warnings.push(
        `several filesystems hold /etc/os-release (${withOs.map((v) => volumeName(v.volume)).join(", ")}); using ${volumeName(root.volume)} (choose with -m DEV:/)`,
      );
    }
  } else if (candidates.length === 1) {
    root = candidates[0];
    warnings.push(`${volumeName(root.volume)} has no /etc/os-release; using it as the root filesystem`);
  } else {
    throw new GuestOpenError(
      `no filesystem holds /etc/os-release; choose the root with -m DEV:/ (${candidates.map((v) => volumeName(v.volume)).join(", ")})`,
      image,
    );
  }
  add(root, "/");
  let fstabText: string | undefined;
  try {
    fstabText = new TextDecoder().decode(await (root.guestFs as GuestFs).readFile("/etc/fstab"));
  } catch {
    // no fstab: the root alone
  }
  if (fstabText !== undefined) {
    for (const e of parseFstab(fstabText)) {
      if (e.mountpoint === "/") continue;
      const vol = findVolume(e.spec, volumes);
      if (!vol) {
        warnings.push(
          `/etc/fstab line ${e.line}: ${e.spec} (${e.mountpoint}) is not on this disk; not mounted`,
        );
        continue;
      }
      add(vols[volumes.indexOf(vol)], e.mountpoint, e.spec);
    }
  }
  return { mounts, infos };
}
