import { describe, expect, it } from "vitest";
import { diffGuests } from "../src/customize/diff.js";
import { modeString, walkGuest } from "../src/customize/walk.js";
import { MemoryGuestFs } from "../src/guest/memory-fs.js";

async function base(): Promise<MemoryGuestFs> {
  const fs = new MemoryGuestFs();
  await fs.mkdir("/etc/b", { recursive: true });
  await fs.writeFile("/etc/a", "same");
  await fs.writeFile("/etc/b/c", "one");
  await fs.writeFile("/etc/m", "m", { mode: 0o644 });
  await fs.writeFile("/etc/o", "o");
  await fs.symlink("/etc/a", "/etc/l");
  await fs.writeFile("/gone", "x");
  return fs;
}

describe("walk and ls -l modes", () => {
  it("walks parents first, sorted, without following symlinks", async () => {
    const fs = await base();
    await fs.symlink("/", "/loop");
    const paths: string[] = [];
    for await (const e of walkGuest(fs, "/")) paths.push(e.path);
    expect(paths).toEqual([
      "/",
      "/etc",
      "/etc/a",
      "/etc/b",
      "/etc/b/c",
      "/etc/l",
      "/etc/m",
      "/etc/o",
      "/gone",
      "/loop",
    ]);
  });
  it("formats modes like ls -l", () => {
    expect(modeString("directory", 0o755)).toBe("drwxr-xr-x");
    expect(modeString("file", 0o4755)).toBe("-rwsr-xr-x");
    expect(modeString("file", 0o2644)).toBe("-rw-r-Sr--");
    expect(modeString("directory", 0o1777)).toBe("drwxrwxrwt");
    expect(modeString("symlink", 0o777)).toBe("lrwxrwxrwx");
  });
});

describe("diffGuests", () => {
  it("reports added, removed, type, mode, owner, target and content changes", async () => {
    const a = await base();
    const b = await base();
    await b.writeFile("/etc/b/c", "two"); // same size, different content
    await b.chmod("/etc/m", 0o600);
    await b.chown("/etc/o", 5, 5);
    await b.unlink("/etc/l");
    await b.symlink("/etc/m", "/etc/l");
    await b.unlink("/gone");
    await b.mkdir("/new");
    await b.unlink("/etc/a");
    await b.mkdir("/etc/a");
    expect(await diffGuests(a, b)).toEqual([
      { path: "/etc/a", kinds: ["type"], details: ["type file -> directory"] },
      { path: "/etc/b/c", kinds: ["content"], details: ["content differs"] },
      { path: "/etc/l", kinds: ["target"], details: ["target /etc/a -> /etc/m"] },
      { path: "/etc/m", kinds: ["mode"], details: ["mode 0644 -> 0600"] },
      { path: "/etc/o", kinds: ["owner"], details: ["owner 0:0 -> 5:5"] },
      { path: "/gone", kinds: ["removed"], details: ["removed file"] },
      { path: "/new", kinds: ["added"], details: ["added directory"] },
    ]);
    expect(await diffGuests(a, await base())).toEqual([]);
  });
});
