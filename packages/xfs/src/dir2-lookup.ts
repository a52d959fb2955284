/**
 * Name lookup in leaf and node directories through the hash index, as the kernel does it
 * (xfs_dir2_leaf_lookup / xfs_dir2_node_lookup): descend the dabtree from the first block of the
 * leaf section to the leaf that holds the name's hash, then read only the data blocks its
 * entries point at. A handful of block reads instead of the whole directory.
 */
import { be16, be64 } from "./bytes.js";
import { checkDa3Block, DA_NODE_MAGIC, DA_NODE_MAXDEPTH, DA3_NODE_MAGIC, decodeDaNode } from "./da-btree.js";
import { checkDir3Header, DIR2_DATA_MAGIC, DIR3_DATA_MAGIC, dataEntrySize } from "./dir2-data.js";
import { asciiCiEqual, dirHashName } from "./dir2-hash.js";
import { leafHashMatches } from "./dir2-leaf.js";
import type { XfsRawDirent } from "./dir2-sf.js";
import { XfsFormatError, type XfsLocation } from "./errors.js";
import type { XfsGeometry } from "./sb.js";

/** Reads directory block `db` (dirBlockSize bytes); returns its bytes and the daddr of its first fs block. */
export type DirBlockReader = (db: number) => Promise<{ b: Uint8Array; daddr: number }>;

/** Hops along leaf siblings allowed while equal hashes continue (bounds damaged chains). */
const MAX_LEAF_HOPS = 64;

export async function hashedLookup(
  g: XfsGeometry,
  dirIno: number,
  name: Uint8Array,
  readBlock: DirBlockReader,
  at: XfsLocation,
): Promise<XfsRawDirent | undefined> {
  const ci = g.features.asciiCi;
  const ftype = g.features.ftype;
  const hash = dirHashName(name, ci);
  const dirFsbs = g.dirBlockFsbs;
  const leafDb = 2 ** 35 / g.dirBlockSize;
  const chk = { owner: dirIno, uuid: g.metaUuid };
  let { b, daddr } = await readBlock(leafDb);
  // Descend the dabtree (node form); leaf form has the leaf right there.
  let level = Number.POSITIVE_INFINITY;
  for (let depth = 0; ; depth++) {
    const magic = be16(b, 8);
    if (magic !== DA_NODE_MAGIC && magic !== DA3_NODE_MAGIC) break;
    const nat = { ...at, structure: "directory dabtree node" };
    if (depth >= DA_NODE_MAXDEPTH || magic !== (g.v5 ? DA3_NODE_MAGIC : DA_NODE_MAGIC))
      throw new XfsFormatError("bad directory dabtree node", nat);
    if (g.v5) checkDa3Block(b, { ...chk, daddr }, nat);
    const node = decodeDaNode(b, g.v5, nat);
    if (node.level >= level) throw new XfsFormatError("directory dabtree levels do not decrease", nat);
    level = node.level;
    const e = node.entries.find((x) => x.hashval >= hash) ?? node.entries[node.entries.length - 1];
    if (e.before % dirFsbs !== 0) throw new XfsFormatError("dabtree pointer is not a directory block", nat);
    ({ b, daddr } = await readBlock(e.before / dirFsbs));
  }
  let ciMatch: XfsRawDirent | undefined;
  const seen = new Set<number>();
  for (let hop = 0; hop < MAX_LEAF_HOPS; hop++) {
    const lat = { ...at, structure: "directory leaf" };
    if (g.v5) checkDa3Block(b, { ...chk, daddr }, lat);
    const leaf = leafHashMatches(b, g.v5, hash, lat);
    for (const address of leaf.addresses) {
      const byte = address * 8;
      const db = Math.floor(byte / g.dirBlockSize);
      const off = byte % g.dirBlockSize;
      if (byte >= 2 ** 35) throw new XfsFormatError("leaf entry points outside the data section", lat);
      const data = await readBlock(db);
      const dat = { ...at, structure: "directory data block" };
      checkDir3Header(
        data.b,
        [g.v5 ? DIR3_DATA_MAGIC : DIR2_DATA_MAGIC],
        { v5: g.v5, daddr: data.daddr, owner: dirIno, uuid: g.metaUuid },
        dat,
      );
      const namelen = data.b[off + 8];
      const size = dataEntrySize(namelen, ftype);
      if (off < (g.v5 ? 64 : 16) || off + size > data.b.length || namelen === 0)
        throw new XfsFormatError(`leaf entry points at a bad data entry (offset ${off})`, dat);
      const entName = data.b.slice(off + 9, off + 9 + namelen);
      const e: XfsRawDirent = {
        name: entName,
        ino: be64(data.b, off),
        ftype: ftype ? data.b[off + 9 + namelen] : 0,
        offset: byte,
      };
      if (entName.length === name.length && entName.every((c, i) => c === name[i])) return e;
      if (ci && !ciMatch && asciiCiEqual(entName, name)) ciMatch = e;
    }
    // Equal hashes may continue in the next leaf (node form).
    if (leaf.lastHash === undefined || leaf.lastHash > hash || leaf.forw === 0) break;
    if (seen.has(leaf.forw) || leaf.forw % dirFsbs !== 0)
      throw new XfsFormatError("directory leaf chain loops", lat);
    seen.add(leaf.forw);
    ({ b, daddr } = await readBlock(leaf.forw / dirFsbs));
  }
  return ciMatch;
}
