/**
 * A .deb package (deb(5)): an ar archive whose members are, in order,
 *
 *   debian-binary          "2.0\n" (format version; major 2 required)
 *   control.tar[.gz|.xz|.zst]   control, md5sums, conffiles, maintainer scripts, triggers, ...
 *   data.tar[.gz|.xz|.zst|.bz2] the files, paths relative ("./usr/bin/x")
 *
 * Members whose names start with "_" may sit between them and are ignored, as dpkg does. The
 * control member is read whole into memory (bounded); the data member is streamed.
 */
import { type ByteSource, type Compressor, decompress, openSource } from "@imgpatch/pkgkit";
import { type ArMember, readArMembers } from "./ar.js";
import { parseStanza, type Stanza } from "./control.js";
import { DebFormatError, DebUnsupportedError } from "./errors.js";
import { readTar } from "./tar.js";

/** Bound on the whole decompressed control member (real ones are a few KiB to a few hundred). */
export const MAX_CONTROL_SIZE = 16 * 1024 * 1024;

const MEMBER_COMPRESSION: Record<string, Compressor> = {
  "": "none",
  ".gz": "gzip",
  ".xz": "xz",
  ".zst": "zstd",
  ".bz2": "bzip2",
};

export interface DebFile {
  readonly name: string;
  readonly source: ByteSource;
  readonly members: ArMember[];
  /** The control stanza. */
  readonly control: Stanza;
  /** Package name, version and architecture from the control stanza. */
  readonly package: string;
  readonly version: string;
  readonly architecture: string;
  /** Every control member file but "control" (md5sums, conffiles, postinst, ...), by name. */
  readonly controlFiles: Map<string, Uint8Array>;
  /** Conffile paths ("/etc/x"), from the conffiles member. */
  readonly conffiles: string[];
  /** The data member, decompressed, as a stream. */
  data(): AsyncIterable<Uint8Array>;
  close(): Promise<void>;
}

function compressionOf(member: ArMember, base: string, file: string): Compressor {
  const suffix = member.name.slice(base.length);
  const c = MEMBER_COMPRESSION[suffix];
  if (!c) {
    if (suffix === ".lzma") {
      throw new DebUnsupportedError(
        `${member.name}: lzma members are not supported (no maintained pure-JS decoder)`,
        {
          file,
          offset: member.offset,
        },
      );
    }
    throw new DebFormatError(`unknown member compression "${member.name}"`, { file, offset: member.offset });
  }
  if (base === "control.tar" && c === "bzip2") {
    throw new DebFormatError("control.tar.bz2 is not a valid control member", {
      file,
      offset: member.offset,
    });
  }
  return c;
}

function memberStream(src: ByteSource, m: ArMember, c: Compressor): AsyncIterable<Uint8Array> {
  return decompress(
    c,
    src.stream(m.offset, m.offset + m.size),
    { file: `${src.name}:${m.name}`, offset: m.offset },
    DebFormatError,
  );
}

/** Normalizes a tar member name of the control archive ("./postinst" → "postinst"). */
function controlName(name: string): string {
  return name.replace(/^\.\//, "").replace(/\/$/, "");
}

/** Opens and checks a .deb; reads its control member. */
export async function readDeb(input: string | Uint8Array, opts: { name?: string } = {}): Promise<DebFile> {
  const src = await openSource(input, opts.name, DebFormatError);
  try {
    return await parse(src);
  } catch (e) {
    await src.close();
    throw e;
  }
}

async function parse(src: ByteSource): Promise<DebFile> {
  const file = src.name;
  const members = await readArMembers(src);
  const [first, ...rest] = members;
  if (first?.name !== "debian-binary") {
    throw new DebFormatError("first ar member is not debian-binary", { file, offset: first?.offset ?? 8 });
  }
  const version = Buffer.from(await src.read(first.offset, Math.min(first.size, 16))).toString("latin1");
  if (!/^2\.\d+\n/.test(version)) {
    throw new DebUnsupportedError(`package format version "${version.trim().slice(0, 10)}" is not 2.x`, {
      file,
      offset: first.offset,
    });
  }
  const real = rest.filter((m) => !m.name.startsWith("_"));
  const controlMember = real[0];
  const dataMember = real[1];
  if (!controlMember?.name.startsWith("control.tar")) {
    throw new DebFormatError("second member is not control.tar", { file, offset: controlMember?.offset });
  }
  if (!dataMember?.name.startsWith("data.tar")) {
    throw new DebFormatError("third member is not data.tar", { file, offset: dataMember?.offset });
  }
  const cc = compressionOf(controlMember, "control.tar", file);
  const dc = compressionOf(dataMember, "data.tar", file);

  const controlFiles = new Map<string, Uint8Array>();
  const where = `${file}:${controlMember.name}`;
  for await (const { entry, data } of readTar(
    memberStream(src, controlMember, cc),
    where,
    MAX_CONTROL_SIZE,
  )) {
    const name = controlName(entry.name);
    if (entry.type === "dir") continue;
    if (entry.type !== "file" || name.includes("/") || name === "" || name === "..") {
      throw new DebFormatError(`control member holds "${entry.name}", expected plain files`, {
        file: where,
        offset: entry.offset,
      });
    }
    const parts: Uint8Array[] = [];
    for await (const c of data) parts.push(c);
    controlFiles.set(name, Buffer.concat(parts));
  }
  const controlText = controlFiles.get("control");
  if (!controlText) throw new DebFormatError("control member has no control file", { file: where });
  controlFiles.delete("control");
  const control = parseStanza(Buffer.from(controlText).toString("utf8"), { file: `${where}/control` });
  const pkg = control.get("Package");
  const ver = control.get("Version");
  const arch = control.get("Architecture");
  if (!pkg || !/^[a-z0-9][a-z0-9+.-]+$/.test(pkg)) {
    throw new DebFormatError(`bad or missing Package field "${pkg ?? ""}"`, { file: `${where}/control` });
  }
  if (!ver) throw new DebFormatError("missing Version field", { file: `${where}/control` });
  if (!arch) throw new DebFormatError("missing Architecture field", { file: `${where}/control` });
  const conffilesText = controlFiles.get("conffiles");
  const conffiles = conffilesText
    ? Buffer.from(conffilesText)
        .toString("utf8")
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l !== "")
        // dpkg ≥ 1.20.1 allows "remove-on-upgrade /path" flags before the path.
        .map((l) => l.slice(l.lastIndexOf(" ") + 1))
    : [];
  return {
    name: file,
    source: src,
    members,
    control,
    package: pkg,
    version: ver,
    architecture: arch,
    controlFiles,
    conffiles,
    data: () => memberStream(src, dataMember, dc),
    close: () => src.close(),
  };
}
