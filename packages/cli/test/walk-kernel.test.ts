/**
 * The walks (`ls -R -l`'s walkGuest, `diff`, `get -R`) against the kernel's view of the same ext4
 * and XFS images through read-only loop mounts: every entry's type, mode, links, owner, size, mtime and
 * link target as find(1) prints them on the mount; `diff` against `diff -rq` of the two mounts (a
 * same-size content change found by reading by inode number); `get -R` against `cp -a` of the mount
 * (diff -r of contents and link targets; modes with setuid/setgid dropped; mtimes).
 */
import { execFileSync } from "node:child_process";
import { chmod, chown, link, mkdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeAsRoot, runTool, runToolOk, tempDir } from "@imgpatch/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { copyOut } from "../src/customize/copy-out.js";
import { diffGuests } from "../src/customize/diff.js";
import { walkGuest } from "../src/customize/walk.js";
import type { GuestFileType } from "../src/guest/guest-fs.js";
import { type Guest, openGuest } from "../src/image/open-guest.js";

const FIND_TYPE: Record<string, GuestFileType> = { f: "file", d: "directory", l: "symlink", p: "fifo" };

/** Builds the source tree: sizes across block boundaries, modes, owners, links, a FIFO. */
async function makeTree(root: string, variant: "a" | "b"): Promise<void> {
  for (let i = 0; i < 60; i++) {
    const d = join(root, `d${i}`, `sub${i % 7}`);
    await mkdir(d, { recursive: true });
    const size = [0, 1, 100, 4095, 4096, 4097, 70000][i % 7];
    let body = Buffer.alloc(size, 97 + (i % 26));
    // b: a same-size change in d5, a size change in d6.
    if (variant === "b" && i === 5) body = Buffer.alloc(size, 122);
    if (variant === "b" && i === 6) body = Buffer.alloc(size + 1, 97);
    await writeFile(join(d, "f.bin"), body);
    if (i % 4 === 0) await symlink(`../../d${i + 1}/f.bin`, join(d, "link"));
    await utimes(join(d, "f.bin"), 1_600_000_000 + i, 1_600_000_000 + i * 1000);
  }
  await chmod(join(root, "d1/sub1/f.bin"), variant === "b" ? 0o600 : 0o640);
  await chmod(join(root, "d2/sub2/f.bin"), 0o4755);
  await chmod(join(root, "d3"), 0o1777);
  await chown(join(root, "d4/sub4/f.bin"), 1000, variant === "b" ? 1001 : 1000);
  await link(join(root, "d7/sub0/f.bin"), join(root, "d7/hard"));
  await writeFile(join(root, "ünï €"), "x");
  execFileSync("mkfifo", [join(root, "d8/fifo")]);
  if (variant === "b") {
    await rm(join(root, "d9"), { recursive: true });
    await writeFile(join(root, "d10/new"), "new");
  }
  for (let i = 0; i < 60; i++)
    if (variant === "a" || i !== 9)
      await utimes(join(root, `d${i}`, `sub${i % 7}`), 1_500_000_000, 1_500_000_000 + i);
}

/** Mounts `image` read-only through a loop device for `fn`; always unmounted and detached. */
async function withMount<T>(
  image: string,
  mnt: string,
  fn: (m: string) => Promise<T>,
  rw = false,
): Promise<T> {
  await mkdir(mnt, { recursive: true });
  const dev = (await runToolOk("losetup", ["--find", "--show", ...(rw ? [] : ["-r"]), image]))
    .toString("utf8")
    .trim();
  try {
    await runToolOk("mount", ["-o", rw ? "rw" : "ro", dev, mnt]);
    try {
      return await fn(mnt);
    } finally {
      await runToolOk("umount", [mnt]);
    }
  } finally {
    await runTool("losetup", ["-d", dev]);
  }
}

/** find(1)'s view of a host tree: path → "type mode links uid gid size mtime-seconds target". */
async function findView(dir: string, withOwner = true): Promise<Map<string, string>> {
  const fmt = "%P\\0%y\\0%m\\0%n\\0%U\\0%G\\0%s\\0%T@\\0%l\\0";
  const out = (await runToolOk("find", [dir, "-mindepth", "1", "-printf", fmt])).toString("utf8");
  const f = out.split("\0");
  const view = new Map<string, string>();
  for (let i = 0; i + 9 <= f.length; i += 9) {
    const [path, t, mode, links, uid, gid, size, mtime, target] = f.slice(i, i + 9);
    const type = FIND_TYPE[t] ?? t;
    // A directory's size and link count are its filesystem's own (a host copy differs).
    const sz = type === "directory" ? "-" : size;
    const own = withOwner ? `${links} ${uid} ${gid}` : "";
    view.set(`/${path}`, `${type} ${mode} ${own} ${sz} ${Math.floor(Number(mtime))} ${target}`);
  }
  return view;
}

for (const kind of ["ext4", "xfs"] as const)
  describeAsRoot(
    ["mke2fs", "mkfs.xfs", "mount", "losetup", "find", "diff", "cp", "mkfifo"],
    `walks against the kernel (${kind})`,
    () => {
      let dir: string;
      const images: Record<"a" | "b", string> = { a: "", b: "" };
      const guests: Guest[] = [];
      beforeAll(async () => {
        dir = await tempDir("walk-kernel-");
        for (const v of ["a", "b"] as const) {
          const src = join(dir, `src-${v}`);
          await makeTree(src, v);
          images[v] = join(dir, `${v}.img`);
          if (kind === "ext4") {
            execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", "-d", src, images[v], "64M"], {
              stdio: "ignore",
            });
          } else {
            // mkfs.xfs has no -d: the kernel copies the tree in (cp -a keeps modes, owners, times, links).
            execFileSync("truncate", ["-s", "320M", images[v]]);
            execFileSync("mkfs.xfs", ["-q", "-f", images[v]], { stdio: "ignore" });
            await withMount(
              images[v],
              join(dir, `fill-${v}`),
              (m) => runToolOk("cp", ["-a", `${src}/.`, m]),
              true,
            );
          }
        }
      });
      afterAll(async () => {
        for (const g of guests) await g.close();
      });

      it("walkGuest (ls -R -l) gives every entry the stats the kernel gives", async () => {
        const g = await openGuest(images.a, {});
        guests.push(g);
        const ours = new Map<string, string>();
        for await (const e of walkGuest(g.fs, "/")) {
          if (e.path === "/") continue;
          const s = e.stats;
          const target = s.type === "symlink" ? await g.fs.readlink(e.path) : "";
          const sz = s.type === "directory" ? "-" : String(s.size);
          const mode = s.mode.toString(8);
          const line = `${s.type} ${mode} ${s.nlink} ${s.uid} ${s.gid} ${sz} ${Math.floor(s.mtime.getTime() / 1000)} ${target}`;
          ours.set(e.path, line);
        }
        const kernel = await withMount(images.a, join(dir, "mnt-a"), (m) => findView(m));
        expect(ours.size).toBeGreaterThan(190);
        // The XFS reader lists by inode number (readdirStats), as the ext4 reader does.
        expect(typeof g.fs.readdirStats).toBe("function");
        expect(ours).toEqual(kernel);
      });

      it("diff reports what diff -rq of the two mounts reports, and the mode and owner changes", async () => {
        const ga = await openGuest(images.a, {});
        const gb = await openGuest(images.b, {});
        guests.push(ga, gb);
        const d = await diffGuests(ga.fs, gb.fs);
        const ma = join(dir, "mnt-da");
        const mb = join(dir, "mnt-db");
        const kernel = await withMount(images.a, ma, () =>
          withMount(images.b, mb, async () => {
            const r = await runTool("diff", ["-rq", "--no-dereference", ma, mb]);
            expect(r.exitCode).toBe(1);
            return r.stdout.toString("utf8");
          }),
        );
        const want: string[] = [];
        for (const line of kernel.trim().split("\n")) {
          if (/^File .* is a fifo while file .* is a fifo$/.test(line)) continue; // neither compares FIFOs
          const differ = /^Files (\S+) and \S+ differ$/.exec(line);
          const only = /^Only in (\S+): (.+)$/.exec(line);
          if (differ) want.push(`content ${differ[1].slice(ma.length)}`);
          else if (only) {
            const side = only[1].startsWith(mb) ? mb : ma;
            const p = `${only[1].slice(side.length)}/${only[2]}`;
            want.push(`${side === mb ? "added" : "removed"} ${p}`);
          } else throw new Error(`unexpected diff output: ${line}`);
        }
        // diff -r names a removed directory, not what was in it; ours lists each entry.
        const ours = d
          .filter((e) => e.kinds.some((k) => k === "content" || k === "added" || k === "removed"))
          .filter((e) => !(e.kinds[0] === "removed" && e.path.startsWith("/d9/")))
          .map((e) => `${e.kinds.find((k) => k !== "mode" && k !== "owner")} ${e.path}`);
        expect(ours.sort()).toEqual(want.sort());
        expect(want).toContain("content /d5/sub5/f.bin"); // same size, other bytes
        expect(d.find((e) => e.path === "/d1/sub1/f.bin")?.kinds).toEqual(["mode"]);
        expect(d.find((e) => e.path === "/d4/sub4/f.bin")?.kinds).toEqual(["owner"]);
      });

      it("get -R copies the tree as cp -a of the mount does (setuid/setgid dropped)", async () => {
        const g = await openGuest(images.a, {});
        guests.push(g);
        const ours = join(dir, "get");
        const r = await copyOut(g.fs, "/", ours);
        expect(r.skipped.map((s) => s.path)).toEqual(["/d8/fifo"]);
        const ref = join(dir, "cp");
        await withMount(images.a, join(dir, "mnt-g"), async (m) => {
          await runToolOk("cp", ["-a", `${m}/.`, ref]);
          // get skips the FIFO; removing cp's copy must not change the directory's times.
          await rm(join(ref, "d8/fifo"));
          await runToolOk("touch", ["-r", join(m, "d8"), join(ref, "d8")]);
        });
        const same = await runTool("diff", ["-r", "--no-dereference", ref, ours]);
        expect(same.stdout.toString("utf8")).toBe("");
        expect(same.exitCode).toBe(0);
        const want = await findView(ref, false);
        for (const [p, v] of want) {
          // Hard links become separate files: only the link count differs, and it is not compared.
          const [type, mode, ...rest] = v.split(" ");
          want.set(p, [type, (Number.parseInt(mode, 8) & 0o1777).toString(8), ...rest].join(" "));
        }
        expect(await findView(ours, false)).toEqual(want);
      });
    },
  );
