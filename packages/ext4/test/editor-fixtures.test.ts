/**
 * Editing the committed fixtures (made by mke2fs -d from real trees: inline-data directories and
 * files, htree directories, hard links, xattrs, block maps): a file added to every directory, the
 * first regular file of each directory replaced, one entry per directory renamed and one removed.
 * Afterwards e2fsck -fn is clean and debugfs lists exactly the expected names.
 */
import { FileDevice } from "@imgpatch/disk";
import { Ext4Editor, Ext4Fs } from "@imgpatch/ext4";
import { debugfsCat, debugfsLs, describeWithTools, e2fsck, fixtureCopy, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";

const FIXTURES = [
  "ext2.img",
  "ext3.img",
  "ext4-default.img",
  "ext4-1k.img",
  "ext4-inline.img",
  "ext4-nocsum.img",
];

describeWithTools(["e2fsck", "debugfs"], "ext4 editor: edits every directory of the fixtures", () => {
  for (const name of FIXTURES) {
    it(name, async () => {
      const dir = await tempDir("edf-");
      const path = await fixtureCopy(name, dir);
      // What is there, read with our reader before editing.
      const before = new Map<string, string[]>();
      {
        const dev = await FileDevice.open(path, { readOnly: true });
        const fs = await Ext4Fs.open(dev);
        for await (const e of fs.walk("/")) {
          if (e.stats.isDirectory() && !e.path.startsWith("/lost+found"))
            before.set(e.path, await fs.readdir(e.path));
        }
        await dev.close();
      }
      const ed = await Ext4Editor.open(await FileDevice.open(path), { timestamp: 1_700_000_000 });
      const expected = new Map<string, Set<string>>();
      const written = new Map<string, string>();
      let n = 0;
      for (const [d, names] of before) {
        const base = d === "/" ? "" : d;
        const set = new Set(names);
        const added = `added-by-editor-${n++}`;
        await ed.writeFile(`${base}/${added}`, `content of ${added}\n`);
        written.set(`${base}/${added}`, `content of ${added}\n`);
        set.add(added);
        const files: string[] = [];
        for (const x of names) if ((await ed.lstat(`${base}/${x}`)).isFile()) files.push(x);
        if (files[0]) {
          await ed.writeFile(`${base}/${files[0]}`, "replaced\n");
          written.set(`${base}/${files[0]}`, "replaced\n");
        }
        if (files[1]) {
          await ed.rename(`${base}/${files[1]}`, `${base}/${files[1]}.renamed`);
          set.delete(files[1]);
          set.add(`${files[1]}.renamed`);
        }
        if (files[2]) {
          await ed.unlink(`${base}/${files[2]}`);
          set.delete(files[2]);
        }
        expected.set(d, set);
      }
      await ed.close();
      const r = await e2fsck(path);
      expect(r.problems, r.output).toEqual([]);
      expect(r.clean, r.output).toBe(true);
      for (const [d, set] of expected) {
        const got = (await debugfsLs(path, d)).map((e) => e.name).filter((x) => x !== "." && x !== "..");
        expect(got.sort(), d).toEqual([...set].sort());
      }
      let checked = 0;
      for (const [p, content] of written) {
        if (checked++ > 40) break;
        expect((await debugfsCat(path, p)).toString(), p).toBe(content);
      }
    }, 120_000);
  }
});
