/**
 * Tree walks through readdirStats (entries listed with their stats, the next directories read
 * ahead) give exactly what the plain readdir + lstat walk gives — same paths in the same order,
 * same stats — on the ext4 reader, on the editor after edits, and across a mount point (a GPT
 * disk with a second ext4 on /mnt/other); the paths are the host trees mke2fs -d copied, and
 * e2fsck -fn checks what the edits wrote.
 */
import { execFileSync } from "node:child_process";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeWithTools, e2fsck, qemuImg, tempDir } from "@imgpatch/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { walkGuest } from "../src/customize/walk.js";
import type { GuestFs, GuestStats } from "../src/guest/guest-fs.js";
import { type Guest, openGuest } from "../src/image/open-guest.js";

/** The same filesystem without readdirStats: walkGuest falls back to readdir + lstat. */
function plain(fs: GuestFs): GuestFs {
  return new Proxy(fs, {
    get(target, prop) {
      if (prop === "readdirStats") return undefined;
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

async function walk(fs: GuestFs, root = "/"): Promise<Array<{ path: string; stats: GuestStats }>> {
  const out: Array<{ path: string; stats: GuestStats }> = [];
  for await (const e of walkGuest(fs, root)) out.push(e);
  return out;
}

async function tree(root: string, dirs: number, tag: string): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < dirs; i++) {
    const d = `/t/d${i}`;
    await mkdir(join(root, d), { recursive: true });
    paths.push(d);
    await writeFile(join(root, d, "f"), `${tag}${i}`.repeat(i));
    paths.push(`${d}/f`);
    if (i % 5 === 0) {
      await symlink("f", join(root, d, "l"));
      paths.push(`${d}/l`);
    }
  }
  return paths;
}

describeWithTools(["mke2fs", "sfdisk", "e2fsck", "qemu-img"], "walks through readdirStats", () => {
  let img: string;
  let rootPaths: string[];
  let otherPaths: string[];
  const guests: Guest[] = [];
  beforeAll(async () => {
    const dir = await tempDir("walkstats-");
    img = join(dir, "disk.img");
    const srcRoot = join(dir, "root");
    const srcOther = join(dir, "other");
    rootPaths = await tree(srcRoot, 120, "r");
    await mkdir(join(srcRoot, "mnt/other"), { recursive: true });
    otherPaths = await tree(srcOther, 40, "o");
    execFileSync("truncate", ["-s", "40M", img]);
    execFileSync("sfdisk", ["-q", img], {
      input: "label: gpt\nstart=2048, size=30720\nstart=32768, size=40960\n",
      stdio: ["pipe", "ignore", "ignore"],
    });
    for (const [start, size, src] of [
      [2048, 30720, srcRoot],
      [32768, 40960, srcOther],
    ] as const) {
      const part = join(dir, `p${start}.img`);
      execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", "-d", src, part, `${(size * 512) / 1024}K`], {
        stdio: "ignore",
      });
      execFileSync("dd", [
        `if=${part}`,
        `of=${img}`,
        "bs=512",
        `seek=${start}`,
        "conv=notrunc",
        "status=none",
      ]);
    }
  });
  afterAll(async () => {
    for (const g of guests) await g.close();
  });

  it("the reader: same walk as readdir + lstat, across the mount point", async () => {
    const g = await openGuest(img, { mounts: ["1:/", "2:/mnt/other"] });
    guests.push(g);
    const fast = await walk(g.fs);
    expect(fast).toEqual(await walk(plain(g.fs)));
    const paths = fast.map((e) => e.path);
    for (const p of rootPaths) expect(paths).toContain(p);
    for (const p of otherPaths) expect(paths).toContain(`/mnt/other${p}`);
    // The mount point stats as the mounted filesystem's root (its own lost+found is listed).
    expect(paths).toContain("/mnt/other/lost+found");
    const mnt = fast.find((e) => e.path === "/mnt/other")!;
    expect(mnt.stats.ino).toBe(2);
    // A second walk (directories remembered by inode are used once) and a walk of a subtree.
    expect(await walk(g.fs)).toEqual(fast);
    expect(await walk(g.fs, "/t/d7")).toEqual(await walk(plain(g.fs), "/t/d7"));
  });

  it("the editor: same walk after edits, which it shows", async () => {
    const dir = await tempDir("walkstats-ov-");
    const g = await openGuest(img, { overlay: join(dir, "ov.qcow2"), mounts: ["1:/", "2:/mnt/other"] });
    guests.push(g);
    await walk(g.fs);
    await g.fs.mkdir("/t/d3/new");
    await g.fs.writeFile("/t/d3/new/x", "hello");
    await g.fs.rename("/t/d4", "/t/d3/new/moved");
    await g.fs.writeFile("/mnt/other/t/d1/y", "y");
    const fast = await walk(g.fs);
    expect(fast).toEqual(await walk(plain(g.fs)));
    const paths = fast.map((e) => e.path);
    expect(paths).toContain("/t/d3/new/x");
    expect(paths).toContain("/t/d3/new/moved/f");
    expect(paths).not.toContain("/t/d4");
    expect(paths).toContain("/mnt/other/t/d1/y");
    // What the edits wrote is consistent (e2fsck -fn on both filesystems of the overlay).
    await g.commit();
    const raw = join(dir, "ov.raw");
    await qemuImg(["convert", "-O", "raw", join(dir, "ov.qcow2"), raw]);
    for (const offset of [2048 * 512, 32768 * 512]) {
      const r = await e2fsck({ path: raw, offset });
      expect(r.problems, `@${offset}`).toEqual([]);
    }
  });
});
