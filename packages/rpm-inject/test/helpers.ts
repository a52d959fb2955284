import { createHash } from "node:crypto";
import { lstat, mkdir, readdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describeWithTools, oraclesRequired, runTool } from "@imgpatch/testkit";
import { describe, it } from "vitest";

export const RPM_FIXTURES = fileURLToPath(new URL("../../../test-fixtures/rpm/out/", import.meta.url));
export const fixtureRpm = (name: string) => join(RPM_FIXTURES, `${name}.noarch.rpm`);

export interface TreeEntry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  sha256?: string;
  link?: string;
  mtime: number;
  rdev?: number;
  nlink: number;
  ino: number;
  caps?: string;
}

function typeOf(st: import("node:fs").Stats): string {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isCharacterDevice()) return "chardev";
  if (st.isBlockDevice()) return "blockdev";
  if (st.isFIFO()) return "fifo";
  return "socket";
}

/** Walks a host directory (not following symlinks), skipping `exclude` guest paths and below. */
export async function snapshotTree(root: string, exclude: string[] = []): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  const walk = async (dir: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const host = join(dir, name);
      const guest = `/${relative(root, host)}`;
      if (exclude.some((e) => guest === e || guest.startsWith(`${e}/`))) continue;
      const st = await lstat(host);
      const type = typeOf(st);
      const e: TreeEntry = {
        type,
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        size: type === "file" || type === "symlink" ? st.size : 0,
        mtime: Math.floor(st.mtimeMs / 1000),
        nlink: type === "dir" ? 0 : st.nlink,
        ino: st.ino,
      };
      if (type === "file")
        e.sha256 = createHash("sha256")
          .update(await readFile(host))
          .digest("hex");
      if (type === "symlink") e.link = await readlink(host);
      if (type === "chardev" || type === "blockdev") e.rdev = st.rdev;
      out.set(guest, e);
      if (type === "dir") await walk(host);
    }
  };
  await walk(root);
  // File capabilities, as the kernel stores them.
  const r = await runTool("getfattr", [
    "-R",
    "-h",
    "-d",
    "-m",
    "^security\\.capability$",
    "-e",
    "hex",
    "--absolute-names",
    root,
  ]);
  let current: string | undefined;
  for (const line of r.stdout.toString("utf8").split("\n")) {
    if (line.startsWith("# file: ")) current = `/${relative(root, line.slice(8))}`;
    else if (line.startsWith("security.capability=") && current && out.has(current)) {
      (out.get(current) as TreeEntry).caps = line.slice("security.capability=".length);
    }
  }
  return out;
}

/** Hard-link groups: sets of paths sharing an inode (as sorted strings), for comparing link structure. */
export function linkGroups(tree: Map<string, TreeEntry>): string[] {
  const byIno = new Map<number, string[]>();
  for (const [p, e] of tree) {
    if (e.type !== "file" || e.nlink < 2) continue;
    byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), p]);
  }
  return [...byIno.values()].map((g) => g.sort().join(" ")).sort();
}

/** Comparable view: drops inode numbers (and mtimes of paths in `ignoreMtime`). */
export function comparable(tree: Map<string, TreeEntry>, ignoreMtime: (path: string) => boolean) {
  const out: Record<string, Omit<TreeEntry, "ino">> = {};
  for (const [p, e] of tree) {
    const { ino: _ino, ...rest } = e;
    out[p] = ignoreMtime(p) ? { ...rest, mtime: 0 } : rest;
  }
  return out;
}

export const PASSWD =
  "root:x:0:0:root:/root:/bin/sh\nimgsvc:x:990:991::/var/lib/imgpatch-demo:/sbin/nologin\n";
export const GROUP = "root:x:0:\nimgsvc:x:991:\n";

/** Writes a file under a host root, creating parents. */
export async function put(root: string, guest: string, content: string, mode = 0o644): Promise<void> {
  const host = join(root, guest);
  await mkdir(join(host, ".."), { recursive: true });
  await writeFile(host, content, { mode });
}

/**
 * Like describeWithTools, but also needs root (rpm -i --root, chown to other users, mknod, setcap):
 * skipped with the reason otherwise, failing instead under IMGPATCH_ORACLES=required.
 */
export function describeAsRootWithTools(tools: string[], title: string, fn: () => void): void {
  if (process.getuid?.() === 0) {
    describeWithTools(tools, title, fn);
    return;
  }
  if (oraclesRequired()) {
    describe(title, () => {
      it("needs root", () => {
        throw new Error(`${title}: needs root (IMGPATCH_ORACLES=required)`);
      });
    });
  } else {
    describe.skip(`${title} [skipped: needs root]`, fn);
  }
}
