/** Synthetic .debs made by the real dpkg-deb --build, for edge cases. */
import { chmod, chown, link, mkdir, symlink, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { runTool, tempDir } from "@imgpatch/testkit";
import { expect } from "vitest";

export interface DebSpec {
  name: string;
  version?: string;
  arch?: string;
  /** Extra control fields ("Depends": "...", "Multi-Arch": "same"). */
  fields?: Record<string, string>;
  /** Files: path → content, or {content, mode, uid, gid}, or {symlink}, or {hardlink: earlier path}, or {dir}. */
  files?: Record<string, FileSpec>;
  /** Control members besides control (conffiles, postinst, triggers, md5sums...). */
  control?: Record<string, string>;
  /** dpkg-deb -Z. */
  compression?: "gzip" | "xz" | "zstd" | "none";
  mtime?: number;
}

export type FileSpec =
  | string
  | { content: string; mode?: number; uid?: number; gid?: number }
  | { symlink: string }
  | { hardlink: string }
  | { dir: true; mode?: number; uid?: number; gid?: number };

export async function buildDeb(spec: DebSpec, outDir?: string): Promise<string> {
  const work = await tempDir("debbuild-");
  const root = join(work, "root");
  await mkdir(join(root, "DEBIAN"), { recursive: true });
  const fields = {
    Package: spec.name,
    Version: spec.version ?? "1.0-1",
    Architecture: spec.arch ?? "all",
    Maintainer: "imgpatch tests <tests@example.invalid>",
    ...spec.fields,
    Description: `${spec.name} test package\n synthetic, made by dpkg-deb --build`,
  };
  await writeFile(
    join(root, "DEBIAN/control"),
    `${Object.entries(fields)
      .map(([k, v]) => `${k}: ${v}`)
      .join("\n")}\n`,
  );
  for (const [name, text] of Object.entries(spec.control ?? {})) {
    await writeFile(join(root, "DEBIAN", name), text);
    if (["preinst", "postinst", "prerm", "postrm", "config"].includes(name))
      await chmod(join(root, "DEBIAN", name), 0o755);
  }
  const t = spec.mtime ?? 1_700_000_000;
  const stamp: string[] = [];
  for (const [p, f] of Object.entries(spec.files ?? {})) {
    const host = join(root, p);
    await mkdir(dirname(host), { recursive: true });
    if (typeof f === "string") await writeFile(host, f);
    else if ("symlink" in f) await symlink(f.symlink, host);
    else if ("hardlink" in f) await link(join(root, f.hardlink), host);
    else if ("dir" in f) {
      await mkdir(host, { recursive: true });
      await chmod(host, f.mode ?? 0o755);
      await chown(host, f.uid ?? 0, f.gid ?? 0);
    } else {
      await writeFile(host, f.content);
      await chown(host, f.uid ?? 0, f.gid ?? 0);
      await chmod(host, f.mode ?? 0o644);
    }
    stamp.push(p);
  }
  const r0 = await runTool("find", [
    root,
    "-path",
    join(root, "DEBIAN"),
    "-prune",
    "-o",
    "-exec",
    "touch",
    "-h",
    "-d",
    `@${t}`,
    "{}",
    "+",
  ]);
  expect(r0.exitCode, r0.stderr.toString()).toBe(0);
  await utimes(root, t, t);
  const out = join(outDir ?? work, `${spec.name}_${fields.Version}_${fields.Architecture}.deb`);
  const r = await runTool("dpkg-deb", ["-Z", spec.compression ?? "xz", "--build", root, out]);
  expect(r.exitCode, r.stderr.toString()).toBe(0);
  return out;
}
