/** Hand-made archives for hostile inputs that dpkg-deb refuses to build. */
import { gzipSync } from "node:zlib";

export interface CraftEntry {
  name: string;
  type?: "0" | "1" | "2" | "5";
  content?: string;
  link?: string;
  mode?: number;
}

function octal(n: number, len: number): string {
  return `${n.toString(8).padStart(len - 1, "0")}\0`;
}

/** A ustar archive (no GNU extensions). */
export function craftTar(entries: CraftEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.content ?? "");
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, "utf8");
    h.write(octal(e.mode ?? 0o644, 8), 100);
    h.write(octal(0, 8), 108);
    h.write(octal(0, 8), 116);
    h.write(octal((e.type ?? "0") === "0" ? body.length : 0, 12), 124);
    h.write(octal(1_700_000_000, 12), 136);
    h.write("        ", 148);
    h.write(e.type ?? "0", 156);
    h.write(e.link ?? "", 157, 100, "utf8");
    h.write("ustar\0", 257);
    h.write("00", 263);
    h.write("root", 265);
    h.write("root", 297);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(octal(sum, 7), 148);
    blocks.push(h);
    if ((e.type ?? "0") === "0") {
      blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** An ar archive of the given members. */
export function craftAr(members: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [Buffer.from("!<arch>\n")];
  for (const [name, data] of members) {
    const h = `${name.padEnd(16)}${"0".padEnd(12)}${"0".padEnd(6)}${"0".padEnd(6)}${"100644".padEnd(8)}${String(data.length).padEnd(10)}\`\n`;
    parts.push(Buffer.from(h, "latin1"), data);
    if (data.length % 2) parts.push(Buffer.from("\n"));
  }
  return Buffer.concat(parts);
}

/** A .deb with a minimal control member and the given data entries. */
export function craftDeb(
  data: CraftEntry[],
  control = "Package: evil\nVersion: 1\nArchitecture: all\nMaintainer: x <x@example.invalid>\nDescription: evil\n",
): Buffer {
  return craftAr([
    ["debian-binary", Buffer.from("2.0\n")],
    ["control.tar.gz", gzipSync(craftTar([{ name: "./control", content: control }]))],
    ["data.tar", craftTar(data)],
  ]);
}
