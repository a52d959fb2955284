// Parsing the partition tools' output for the oracle tests.
import { runToolOk } from "@imgpatch/testkit";

export interface OraclePartition {
  number: number;
  /** In sectors. */
  start: number;
  size: number;
  /** sfdisk spelling: "83" for dos, uppercase GUID for gpt. */
  type: string;
  uuid?: string;
  name?: string;
  attrs?: string;
  bootable?: boolean;
}

export interface OracleTable {
  label: "dos" | "gpt";
  id: string;
  sectorSize: number;
  firstLba?: number;
  lastLba?: number;
  partitions: OraclePartition[];
}

interface SfdiskJson {
  partitiontable: {
    label: "dos" | "gpt";
    id: string;
    sectorsize?: number;
    firstlba?: number;
    lastlba?: number;
    partitions?: Array<{
      node: string;
      start: number;
      size: number;
      type: string;
      uuid?: string;
      name?: string;
      attrs?: string;
      bootable?: boolean;
    }>;
  };
}

const nodeNumber = (node: string) => Number(/(\d+)$/.exec(node)![1]);

/** `sfdisk --json` (optionally with a nested label such as the MBR of a hybrid GPT disk). */
export async function sfdiskJson(path: string, nested?: "dos"): Promise<OracleTable> {
  const args = nested ? ["--label-nested", nested, "--json", path] : ["--json", path];
  const j = JSON.parse((await runToolOk("sfdisk", args)).toString("utf8")) as SfdiskJson;
  const t = j.partitiontable;
  return {
    label: t.label,
    id: t.id,
    sectorSize: t.sectorsize ?? 512,
    firstLba: t.firstlba,
    lastLba: t.lastlba,
    partitions: (t.partitions ?? []).map((p) => ({
      number: nodeNumber(p.node),
      start: p.start,
      size: p.size,
      type: p.type,
      uuid: p.uuid,
      name: p.name,
      attrs: p.attrs,
      bootable: p.bootable,
    })),
  };
}

/** PARTUUIDs as libblkid computes them (sfdisk --json has none for dos). */
export async function partxUuids(path: string): Promise<Map<number, string>> {
  const out = (await runToolOk("partx", ["--show", "--noheadings", "-o", "NR,UUID", path])).toString();
  const m = new Map<number, string>();
  for (const line of out.trim().split("\n")) {
    const [nr, uuid] = line.trim().split(/\s+/);
    m.set(Number(nr), uuid);
  }
  return m;
}

/**
 * Parse an sfdisk script (`sfdisk --dump`, or fdisk's "O" command, which is how we read a
 * 4096-byte-sector GPT that sfdisk cannot be told the sector size of).
 */
export function parseSfdiskDump(text: string): OracleTable {
  const header = new Map<string, string>();
  const partitions: OraclePartition[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\S+)\s*:\s*(.*)$/.exec(line);
    if (!m) continue;
    if (line.includes("start=")) {
      const fields = new Map<string, string>();
      for (const part of m[2].matchAll(/(\w[\w-]*)=\s*("([^"]*)"|[^,]*)/g)) {
        fields.set(part[1], part[3] ?? part[2].trim());
      }
      partitions.push({
        number: nodeNumber(m[1]),
        start: Number(fields.get("start")),
        size: Number(fields.get("size")),
        type: fields.get("type")!,
        uuid: fields.get("uuid"),
        name: fields.get("name"),
        attrs: fields.get("attrs"),
      });
    } else {
      header.set(m[1], m[2].trim());
    }
  }
  return {
    label: header.get("label") as "dos" | "gpt",
    id: header.get("label-id")!,
    sectorSize: Number(header.get("sector-size") ?? 512),
    firstLba: header.has("first-lba") ? Number(header.get("first-lba")) : undefined,
    lastLba: header.has("last-lba") ? Number(header.get("last-lba")) : undefined,
    partitions,
  };
}

/** Attribute bits from sfdisk's attrs string, e.g. "RequiredPartition LegacyBIOSBootable GUID:60". */
export function sfdiskAttrBits(attrs: string | undefined): bigint {
  let bits = 0n;
  for (const word of (attrs ?? "").split(/\s+/).filter(Boolean)) {
    if (word === "RequiredPartition") bits |= 1n;
    else if (word === "NoBlockIOProtocol") bits |= 2n;
    else if (word === "LegacyBIOSBootable") bits |= 4n;
    else if (word.startsWith("GUID:")) {
      for (const b of word.slice(5).split(",")) bits |= 1n << BigInt(b);
    } else throw new Error(`unknown sfdisk attribute ${word}`);
  }
  return bits;
}

/** `blkid -p -o export` (low-level probe, no cache) → key/value map; empty when nothing found. */
export async function blkidProbe(path: string, offset?: number): Promise<Record<string, string>> {
  const { runTool } = await import("@imgpatch/testkit");
  const args = ["-p", "-o", "export", ...(offset !== undefined ? ["-O", String(offset)] : []), path];
  const r = await runTool("blkid", args);
  // Exit code 2: nothing found. 8: ambiguous probe.
  if (r.exitCode === 2) return {};
  if (r.exitCode !== 0) throw new Error(`blkid ${args.join(" ")} exited ${r.exitCode}: ${r.stderr}`);
  const out: Record<string, string> = {};
  for (const line of r.stdout.toString("utf8").split("\n")) {
    const i = line.indexOf("=");
    // export format escapes spaces and specials with a backslash
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).replace(/\\(.)/g, "$1");
  }
  return out;
}
