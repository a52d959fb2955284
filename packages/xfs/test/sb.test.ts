import { execFileSync } from "node:child_process";
import { closeSync, openSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeWithTools, tempDir } from "@imgpatch/testkit";
import { expect, it } from "vitest";
import {
  checkFeatures,
  decodeSuperblock,
  encodeSuperblock,
  validateSuperblock,
  XfsChecksumError,
  XfsFormatError,
  XfsGeometry,
  XfsUnsupportedError,
} from "../src/index.js";

function sector0(path: string, size = 4096): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const b = new Uint8Array(size);
    readSync(fd, b, 0, size, 0);
    return b;
  } finally {
    closeSync(fd);
  }
}

function mkfs(dir: string, name: string, args: string[]): string {
  const p = join(dir, name);
  writeFileSync(p, "");
  execFileSync("truncate", ["-s", "64M", p]);
  execFileSync("mkfs.xfs", ["-q", "-f", ...args, p], {
    env: { ...process.env, TEST_DIR: dir, TEST_DEV: p, QA_CHECK_FS: "xfs" },
  });
  return p;
}

function dbValue(path: string, field: string): string {
  const out = execFileSync("xfs_db", ["-r", "-f", "-c", `sb 0`, "-c", `print ${field}`, path]).toString();
  return out.split("=")[1].trim();
}

describeWithTools(["mkfs.xfs", "xfs_db"], "superblock", () => {
  it("decodes v4, v5 and v5+rmapbt superblocks like xfs_db, and re-encodes them bit for bit", async () => {
    const dir = await tempDir("xfs-sb-");
    const cases = [
      {
        name: "v4",
        args: ["-m", "crc=0,finobt=0,reflink=0,rmapbt=0,bigtime=0,inobtcount=0", "-i", "sparse=0"],
      },
      { name: "v5", args: [] },
      { name: "rmap", args: ["-m", "rmapbt=1", "-b", "size=1024", "-s", "size=512", "-n", "size=16384"] },
      { name: "ci", args: ["-n", "version=ci", "-i", "size=2048"] },
    ];
    for (const c of cases) {
      const p = mkfs(dir, `${c.name}.img`, c.args);
      const raw = sector0(p);
      const sb = decodeSuperblock(raw);
      const sect = raw.slice(0, sb.sectsize);
      validateSuperblock(sb, sect);
      const geo = new XfsGeometry(sb);
      expect(sb.blocksize).toBe(Number(dbValue(p, "blocksize")));
      expect(sb.agcount).toBe(Number(dbValue(p, "agcount")));
      expect(sb.rootino).toBe(Number(dbValue(p, "rootino")));
      expect(sb.icount).toBe(Number(dbValue(p, "icount")));
      expect(sb.fdblocks).toBe(Number(dbValue(p, "fdblocks")));
      expect(sb.logstart).toBe(Number(dbValue(p, "logstart")));
      expect(geo.v5).toBe(c.name !== "v4");
      expect(geo.features.rmapbt).toBe(c.name === "rmap");
      expect(geo.features.asciiCi).toBe(c.name === "ci");
      expect(geo.features.ftype).toBe(true);
      expect(geo.features.finobt).toBe(c.name !== "v4");
      expect(geo.validIno(sb.rootino)).toBe(true);
      expect(geo.inoToAgno(sb.rootino)).toBe(0);
      expect(geo.aginoToIno(0, geo.inoToAgino(sb.rootino))).toBe(sb.rootino);
      expect(checkFeatures(sb)).toEqual({});
      const again = new Uint8Array(sect.length);
      again.set(sect);
      again.fill(0, 0, 264);
      encodeSuperblock(sb, again);
      expect(Buffer.from(again).equals(Buffer.from(sect))).toBe(true);
    }
  });

  it("refuses bad CRCs, unknown incompat bits, needsrepair and nonsense geometry with typed errors", async () => {
    const dir = await tempDir("xfs-sb-");
    const p = mkfs(dir, "v5.img", []);
    const raw = sector0(p);
    const sb0 = decodeSuperblock(raw);
    const sect = raw.slice(0, sb0.sectsize);
    const flipped = sect.slice();
    flipped[130] ^= 1;
    expect(() => validateSuperblock(decodeSuperblock(flipped), flipped)).toThrow(XfsChecksumError);
    const sb = decodeSuperblock(sect);
    sb.featuresIncompat |= 0x1000;
    expect(() => checkFeatures(sb)).toThrow(XfsUnsupportedError);
    const sb2 = decodeSuperblock(sect);
    sb2.featuresIncompat |= 1 << 4;
    expect(() => checkFeatures(sb2)).toThrow(/needing repair/);
    const sb3 = decodeSuperblock(sect);
    sb3.featuresRoCompat |= 0x100;
    expect(checkFeatures(sb3).writeRefusal?.feature).toBe("ro-compat:0x100");
    const sb4 = decodeSuperblock(sect);
    sb4.agblklog += 1;
    const enc = sect.slice();
    encodeSuperblock(sb4, enc);
    expect(() => validateSuperblock(sb4, enc)).toThrow(XfsFormatError);
  });
});
