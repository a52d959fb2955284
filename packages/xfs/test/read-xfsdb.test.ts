/**
 * The reader against xfs_db where the kernel here refuses the filesystem (v4, ASCII-ci): every
 * directory listing (names, inode numbers, types and xfs_db's own hash check), inode core fields,
 * and file content against the files mkfs.xfs copied in.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CountingDevice, FileDevice } from "@imgpatch/disk";
import { describeWithTools, xfsDb, xfsRepairCheck } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { dirHashName, XfsFs, XfsFsError } from "../src/index.js";
import { type BuiltImage, buildImage, imageDir, VARIANTS } from "./images.js";

process.env.TZ = "UTC";
const DB_VARIANTS = VARIANTS.filter((v) => !v.kernel || v.name === "v5");

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** A Unix time the way xfs_db prints it (ctime(3) format, UTC). */
function ctimeString(sec: number): string {
  const d = new Date(sec * 1000);
  const p2 = (n: number) => String(n).padStart(2, "0");
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, " ")} ${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

const TYPE_NAMES: Record<string, string> = {
  directory: "dir",
  regular: "file",
  symlink: "symlink",
  chardev: "chrdev",
  blkdev: "blkdev",
  fifo: "fifo",
  socket: "sock",
};

describeWithTools(["mkfs.xfs", "xfs_db", "xfs_repair"], "XfsFs against xfs_db", () => {
  let dir: string;
  const images = new Map<string, BuiltImage>();
  beforeAll(async () => {
    dir = await imageDir();
    // Protofile content only (the same for every variant), so the comparison does not need root.
    for (const v of DB_VARIANTS) images.set(v.name, await buildImage({ ...v, kernel: false }, dir));
  });

  for (const v of DB_VARIANTS) {
    it(`${v.name}: directory listings, hashes, inode cores and contents match xfs_db and the source files`, async () => {
      const img = images.get(v.name) as BuiltImage;
      expect((await xfsRepairCheck(img.path)).clean).toBe(true);
      const dev = await FileDevice.open(img.path, { readOnly: true });
      try {
        const fs = await XfsFs.open(dev);
        const ci = fs.features.asciiCi;
        expect(ci).toBe(v.name.includes("ci"));
        expect(fs.geometry.v5).toBe(!v.name.startsWith("v4"));
        const dirs: string[] = [];
        const inodes: { path: string; ino: number }[] = [];
        for await (const w of fs.walk("/")) {
          if (w.stats.isDirectory()) dirs.push(w.path);
          if (!/\/p(leaf|node|block)\/.+[1-9]$/.test(w.path)) inodes.push({ path: w.path, ino: w.ino });
        }
        // Directory listings, in one xfs_db run.
        const ls = await xfsDb(
          img.path,
          dirs.map((d) => `ls ${d}`),
        );
        const listed = new Map<string, string[]>();
        let cur: string[] = [];
        for (const line of ls.split("\n")) {
          if (line.endsWith(":") && line.startsWith("/")) {
            cur = [];
            listed.set(line.slice(0, -1), cur);
            continue;
          }
          const m =
            /^\d+\s+(\d+)\s+(directory|regular|symlink|chardev|blkdev|fifo|socket)\s+0x([0-9a-f]+)\s+\d+\s+(.*) \((good|bad)\)$/.exec(
              line.trim(),
            );
          if (!m) continue;
          expect(m[5]).toBe("good");
          const name = m[4];
          // xfs_db's hash column is the on-disk name hash: ours must agree (ci variant included).
          expect(dirHashName(Buffer.from(name), ci)).toBe(Number.parseInt(m[3], 16));
          cur.push(`${name} ${m[1]} ${TYPE_NAMES[m[2]]}`);
        }
        expect(listed.size).toBe(dirs.length);
        for (const d of dirs) {
          const inode = (await fs.stat(d)).ino;
          const ours = (await fs.dirEntries(await fs.readInode(inode))).map((e) => {
            const t = e.ftype
              ? ["", "file", "dir", "chrdev", "blkdev", "fifo", "sock", "symlink"][e.ftype]
              : "";
            return `${Buffer.from(e.name).toString()} ${e.ino} ${t}`;
          });
          expect(ours.sort()).toEqual((listed.get(d) ?? []).sort());
        }
        // Inode cores.
        const fields = [
          "core.mode",
          "core.uid",
          "core.gid",
          "core.size",
          "core.nlinkv2",
          "core.mtime.sec",
          "core.mtime.nsec",
        ];
        const cmds: string[] = [];
        for (const i of inodes) cmds.push(`inode ${i.ino}`, `print ${fields.join(" ")}`);
        const printed = (await xfsDb(img.path, cmds)).split("\n").filter((l) => l.includes(" = "));
        expect(printed.length).toBe(inodes.length * fields.length);
        for (let k = 0; k < inodes.length; k++) {
          const s = await fs.lstat(inodes[k].path);
          const vals = printed
            .slice(k * fields.length, (k + 1) * fields.length)
            .map((l) => l.split(" = ")[1]);
          expect(vals, inodes[k].path).toEqual([
            `0${s.mode.toString(8)}`,
            String(s.uid),
            String(s.gid),
            String(s.size),
            String(s.nlink),
            ctimeString(s.mtimeSpec.sec),
            String(s.mtimeSpec.nsec),
          ]);
        }
        // Contents against the files mkfs copied in, device numbers, links.
        const src = join(dir, v.name, "src");
        const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
        for (const f of ["small", "empty", "medium", "large"])
          expect(sha(await fs.readFile(`/files/${f}`))).toBe(sha(await readFile(join(src, f))));
        const big = await fs.lstat("/dev/big");
        expect([big.rdevMajor, big.rdevMinor]).toEqual([300, 70000]);
        expect(await fs.readlink("/links/short")).toBe("../files/small");
        expect((await fs.readFile("/links/short")).toString()).toBe("hello xfs\n");
        expect((await fs.readdir("/links/dir")).sort()).toEqual([
          "empty",
          "large",
          "medium",
          "small",
          "suid",
        ]);
        if (v.name.startsWith("v4")) expect((await fs.readlink("/links/long")).length).toBe(703);
        // Lookups in leaf and node directories go through the hash index: every name resolves to
        // the inode the listing names, a few block reads each; missing names are ENOENT.
        for (const d of ["/pleaf", "/pnode"]) {
          const entries = (await fs.readdir(d, { withFileTypes: true })).filter((_, k) => k % 7 === 0);
          const fresh = new CountingDevice(dev);
          const fs3 = await XfsFs.open(fresh);
          await fs3.stat(d);
          const r0 = fresh.counts.reads;
          for (const e of entries) expect((await fs3.lstat(`${d}/${e.name}`)).ino).toBe(e.ino);
          expect((fresh.counts.reads - r0) / entries.length).toBeLessThan(6);
          await expect(fs3.lstat(`${d}/no-such-name`)).rejects.toMatchObject({ code: "ENOENT" });
          if (ci) expect((await fs3.lstat(`${d}/${entries[1].name.toUpperCase()}`)).ino).toBe(entries[1].ino);
        }
        // A walk of a 2,500-entry directory reads inodes a chunk at a time, not one by one.
        const counted = new CountingDevice(dev);
        const fs2 = await XfsFs.open(counted);
        const before = counted.counts.reads;
        let n = 0;
        for await (const w of fs2.walk("/pnode")) if (w.stats.isFile()) n++;
        expect(n).toBe(2500);
        expect(counted.counts.reads - before).toBeLessThan(200);
        // ASCII-ci: lookups ignore ASCII case, elsewhere they do not.
        if (ci)
          expect((await fs.stat("/ETC/mixedcase.txt")).ino).toBe((await fs.stat("/etc/MixedCase.TXT")).ino);
        else await expect(fs.stat("/ETC/mixedcase.txt")).rejects.toBeInstanceOf(XfsFsError);
      } finally {
        await dev.close();
      }
    });
  }
});
