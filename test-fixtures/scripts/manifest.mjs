#!/usr/bin/env node
// manifest.mjs <tree-dir> <tree-name>: JSON manifest of a source tree, as the HOST sees it
// (lstat + getfattr), written to stdout. This is the ground truth the fixture tests compare the
// filesystem images against, so it never comes from a reader of ours.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";

const [root, treeName] = process.argv.slice(2);
if (!root || !treeName) throw new Error("usage: manifest.mjs <dir> <name>");

function typeOf(st) {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isCharacterDevice()) return "chardev";
  if (st.isBlockDevice()) return "blockdev";
  if (st.isFIFO()) return "fifo";
  if (st.isSocket()) return "socket";
  throw new Error("unknown file type");
}

// getfattr escapes unusual bytes in names as \ooo.
function unescapeName(s) {
  return Buffer.from(
    s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(Number.parseInt(o, 8))),
    "latin1",
  ).toString("utf8");
}

function readXattrs() {
  const r = spawnSync("getfattr", ["-R", "-h", "-d", "-m", "-", "-e", "base64", "--absolute-names", root], {
    maxBuffer: 1 << 28,
  });
  if (r.error) throw r.error;
  const out = new Map();
  let current;
  for (const line of r.stdout.toString("latin1").split("\n")) {
    if (line.startsWith("# file: ")) {
      current = {};
      out.set(unescapeName(line.slice(8)), current);
    } else if (line !== "" && current) {
      const eq = line.indexOf("=");
      const name = eq < 0 ? line : line.slice(0, eq);
      let value = eq < 0 ? "" : line.slice(eq + 1);
      if (value.startsWith("0s")) value = value.slice(2);
      else throw new Error(`unexpected getfattr value encoding: ${line}`);
      current[name] = value;
    }
  }
  return out;
}

const xattrs = readXattrs();
const entries = [];
const inodes = new Map(); // host ino -> [entries]

function walk(abs, rel) {
  const st = lstatSync(abs, { bigint: true });
  const type = typeOf(st);
  const e = {
    path: rel === "" ? "/" : rel,
    type,
    mode: Number(st.mode),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: 0,
  };
  if (type === "file") {
    const data = readFileSync(abs);
    e.size = data.length;
    e.sha256 = createHash("sha256").update(data).digest("hex");
    e.allocated = Number(st.blocks) * 512;
  } else if (type === "symlink") {
    const target = readlinkSync(abs, { encoding: "buffer" });
    e.size = target.length;
    e.target = target.toString("utf8");
  }
  const xa = xattrs.get(abs) ?? {};
  e.xattrs = Object.fromEntries(Object.entries(xa).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const ns = st.mtimeNs;
  const sec = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  e.mtime = { sec: Number(sec), nsec: Number(ns - sec * 1_000_000_000n) };
  e.nlink = Number(st.nlink);
  if (type === "chardev" || type === "blockdev") {
    const d = st.rdev;
    e.rdev = {
      major: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn)),
      minor: Number((d & 0xffn) | ((d >> 12n) & ~0xffn)),
    };
  }
  if (type !== "dir" && st.nlink > 1n) {
    const list = inodes.get(st.ino) ?? [];
    list.push(e);
    inodes.set(st.ino, list);
  }
  entries.push(e);
  if (type === "dir") {
    const names = readdirSync(abs, { encoding: "buffer" })
      .map((b) => b.toString("utf8"))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const n of names) walk(join(abs, n), `${rel}/${n}`);
  }
}

walk(root, "");
let group = 0;
for (const list of inodes.values()) {
  group++;
  for (const e of list) e.hardlinkGroup = group;
}
// Stable order: by path bytes.
entries.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
// One entry per line: diffable, and compact once gzipped.
process.stdout.write(
  `{"tree":${JSON.stringify(treeName)},"entries":[\n${entries.map((e) => JSON.stringify(e)).join(",\n")}\n]}\n`,
);
