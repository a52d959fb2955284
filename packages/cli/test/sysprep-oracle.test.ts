/**
 * `imgpatch sysprep` against the real virt-sysprep (libguestfs-tools, LIBGUESTFS_BACKEND=direct:
 * one appliance boot per run, under TCG when there is no KVM) on identical copies of realistic
 * guests (test/support/sysprep-guest.ts). Both outputs are loop-mounted read-only and the set of
 * paths removed, emptied, changed or added (type, mode, owner, content; not times) must be the same,
 * reported operation by operation (each path is attributed to the operation whose change lines
 * name it in our run). Two boots cover everything:
 *  A. a RHEL 7-like ext4 guest, the default set (the RHEL-only and yum operations fire);
 *  B. a Debian 12-like XFS guest, the default set plus the off-by-default operations that need no
 *     program run inside the guest: firewall-rules, flag-reconfiguration, kerberos-data,
 *     user-account (--keep-user-accounts bob) and fs-uuids (blkid: both give a new UUID).
 * ca-certificates is left out: virt-sysprep runs update-ca-trust inside its appliance (we queue it
 * for the first boot), which needs a runnable guest. e2fsck -fn / xfs_repair -n after each run.
 * virt-sysprep's result is cached by content (see guestAndTheirs): `npm test` boots only when the
 * guest, the case or the tools change; test:full boots every time.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { built, copySparse, describeAsRoot, fullSuite, runTool, tempDir } from "@imgpatch/testkit";
import { beforeAll, expect, it } from "vitest";
import { type CliIo, runCli } from "../src/commands/main.js";
import { buildSysprepTree, makeExt4, makeXfs } from "./support/sysprep-guest.js";
import { type DeltaKind, deltaLines, snapshotTree, treeDelta } from "./support/tree-delta.js";

const BOOT_TIMEOUT_MS = 40 * 60_000;

function io(): CliIo & { stdout: string; stderr: string } {
  const o = {
    stdout: "",
    stderr: "",
    out(t: string) {
      o.stdout += t;
    },
    err(t: string) {
      o.stderr += t;
    },
    isTTY: false,
    env: { ...process.env },
  };
  return o;
}

async function mountedSnapshot(image: string, type: "ext4" | "xfs", mnt: string) {
  mkdirSync(mnt, { recursive: true });
  const dev = execFileSync("losetup", ["--find", "--show", "-r", image]).toString().trim();
  try {
    execFileSync("mount", ["-t", type, "-o", type === "ext4" ? "ro,noload" : "ro,norecovery", dev, mnt]);
    try {
      return snapshotTree(mnt);
    } finally {
      execFileSync("umount", [mnt]);
    }
  } finally {
    execFileSync("losetup", ["-d", dev]);
  }
}

function blkidUuid(image: string): string {
  return execFileSync("blkid", ["-p", "-s", "UUID", "-o", "value", image]).toString().trim();
}

async function checkFs(image: string, type: "ext4" | "xfs"): Promise<{ clean: boolean; output: string }> {
  const r =
    type === "ext4"
      ? await runTool("e2fsck", ["-fn", image])
      : await runTool("xfs_repair", ["-n", "-f", image], { timeoutMs: 600_000 });
  return { clean: r.exitCode === 0, output: `${r.stdout.toString()}${r.stderr}` };
}

interface Case {
  name: string;
  flavour: "rhel7" | "debian12";
  fs: "ext4" | "xfs";
  args: string[];
  /** Off-by-default operations that must have changed something. */
  mustRun: string[];
}

const CASES: Case[] = [
  { name: "A: RHEL 7-like ext4 guest, default set", flavour: "rhel7", fs: "ext4", args: [], mustRun: [] },
  {
    name: "B: Debian 12-like XFS guest, default set + off-by-default operations",
    flavour: "debian12",
    fs: "xfs",
    args: [
      "--operations",
      "defaults,firewall-rules,flag-reconfiguration,kerberos-data,user-account,fs-uuids",
      "--keep-user-accounts",
      "bob",
    ],
    mustRun: ["firewall-rules", "flag-reconfiguration", "kerberos-data", "user-account"],
  },
];

const GUEST_BUILDER = fileURLToPath(new URL("./support/sysprep-guest.ts", import.meta.url));

/** Writes `out`/base.img (the guest) and `out`/theirs.img (virt-sysprep's result on a copy). */
async function bootVirtSysprep(c: Case, uuid: string, out: string): Promise<void> {
  mkdirSync(out, { recursive: true });
  const tree = join(out, "tree");
  const base = join(out, "base.img");
  const theirs = join(out, "theirs.img");
  buildSysprepTree(tree, c.flavour);
  if (c.fs === "ext4") makeExt4(tree, base, uuid);
  else makeXfs(tree, base, uuid);
  rmSync(tree, { recursive: true, force: true });
  await copySparse(base, theirs);
  const t0 = performance.now();
  const r = await runTool("virt-sysprep", ["--format", "raw", "-a", theirs, ...c.args], {
    env: { LIBGUESTFS_BACKEND: "direct", LIBGUESTFS_BACKEND_SETTINGS: "force_tcg" },
    timeoutMs: BOOT_TIMEOUT_MS,
  });
  const secs = (performance.now() - t0) / 1000;
  process.stderr.write(`[sysprep-oracle] ${c.name}: virt-sysprep took ${secs.toFixed(1)} s (one boot)\n`);
  if (r.exitCode !== 0)
    throw new Error(`virt-sysprep failed (${r.exitCode}): ${r.stdout.toString()}${r.stderr}`);
}

/**
 * The directory holding a case's guest (base.img) and virt-sysprep's result (theirs.img). A boot
 * under TCG costs a minute or more of CPU, so `npm test` keeps the pair in testkit's built() cache,
 * keyed by the guest builder's source, the case and the tool binaries: the oracle boots again
 * whenever any of them changes, and on every fresh checkout (CI). test:full always boots. Our run
 * starts from the very guest virt-sysprep got (read-only: both are only read below).
 */
async function guestAndTheirs(c: Case, uuid: string): Promise<string> {
  if (fullSuite()) {
    const out = join(await tempDir("sysprep-oracle-boot-"), "pair");
    await bootVirtSysprep(c, uuid, out);
    return out;
  }
  return built(
    {
      name: `sysprep-oracle-${c.flavour}`,
      files: [GUEST_BUILDER],
      params: [c.fs, uuid, ...c.args, "LIBGUESTFS_BACKEND=direct", "force_tcg"],
      tools: ["virt-sysprep", "mke2fs", "mkfs.xfs"],
    },
    (out) => bootVirtSysprep(c, uuid, out),
  );
}

describeAsRoot(
  ["virt-sysprep", "mke2fs", "e2fsck", "mkfs.xfs", "xfs_repair", "blkid", "losetup", "mount"],
  "sysprep against virt-sysprep (one appliance boot per case)",
  () => {
    let dir: string;
    beforeAll(async () => {
      dir = await tempDir("sysprep-oracle-");
    });

    it("lists the same 43 operations, headings and default set as virt-sysprep --list-operations", async () => {
      const theirs = execFileSync("virt-sysprep", ["--list-operations"]).toString();
      const o = io();
      expect(await runCli(["sysprep", "--list-operations"], o)).toBe(0);
      expect(o.stdout).toBe(theirs);
      expect(o.stdout.trim().split("\n")).toHaveLength(43);
      expect(o.stdout.split("\n").filter((l) => / \* /.test(l))).toHaveLength(37);
    });

    for (const c of CASES) {
      it(
        c.name,
        async () => {
          const uuid =
            c.fs === "ext4" ? "0b9e1a5c-3d2f-4e6a-8b7c-9d0e1f2a3b4c" : "1c9e1a5c-3d2f-4e6a-8b7c-9d0e1f2a3b4c";
          const pair = await guestAndTheirs(c, uuid);
          const base = join(pair, "base.img");
          const theirs = join(pair, "theirs.img");
          const ours = join(dir, `${c.flavour}-ours.img`);

          const o = io();
          const code = await runCli(["sysprep", base, "-o", ours, "--json", ...c.args], o);
          expect(code, o.stderr).toBe(0);
          const report = JSON.parse(o.stdout) as { operations: Array<{ op: string; changes: string[] }> };

          const ourCheck = await checkFs(ours, c.fs);
          expect(ourCheck.clean, ourCheck.output).toBe(true);
          const theirCheck = await checkFs(theirs, c.fs);
          expect(theirCheck.clean, theirCheck.output).toBe(true);

          const before = await mountedSnapshot(base, c.fs, join(dir, "mnt"));
          const dOurs = treeDelta(before, await mountedSnapshot(ours, c.fs, join(dir, "mnt")));
          const dTheirs = treeDelta(before, await mountedSnapshot(theirs, c.fs, join(dir, "mnt")));

          // operation by operation: each changed path goes to the operation whose lines name it
          const owner = new Map<string, string>();
          for (const op of report.operations)
            for (const line of op.changes) {
              const m = /^(?:delete|truncate|write|edit|touch) (\/\S*)/.exec(line);
              // the kernel sees /var/run/… (a symlink to ../run in these guests) as /run/…
              if (m) owner.set(m[1].replace(/^\/var\/run\//, "/run/"), op.op);
            }
          const opOf = (p: string) => {
            for (let q = p; q !== ""; q = q.slice(0, q.lastIndexOf("/")))
              if (owner.has(q)) return owner.get(q) as string;
            return "(no operation)";
          };
          const byOp = (d: Map<string, DeltaKind>) => {
            const m = new Map<string, string[]>();
            for (const [p, k] of d) m.set(opOf(p), [...(m.get(opOf(p)) ?? []), `${k} ${p}`]);
            return m;
          };
          const ourOps = byOp(dOurs);
          const theirOps = byOp(dTheirs);
          for (const op of new Set([...ourOps.keys(), ...theirOps.keys()]))
            expect(ourOps.get(op) ?? [], `operation ${op}`).toEqual(theirOps.get(op) ?? []);
          expect(deltaLines(dOurs)).toEqual(deltaLines(dTheirs));
          // every change is explained by the change lines of one operation
          expect(ourOps.get("(no operation)") ?? []).toEqual([]);
          for (const op of c.mustRun)
            expect(ourOps.get(op)?.length ?? 0, `${op} changed nothing`).toBeGreaterThan(0);
          process.stderr.write(
            `[sysprep-oracle] ${c.name}: ${dOurs.size} paths agree across ${ourOps.size} operations (${[...ourOps.keys()].join(", ")})\n`,
          );

          if (c.args.join(" ").includes("fs-uuids")) {
            expect(blkidUuid(ours)).not.toBe(uuid);
            expect(blkidUuid(theirs)).not.toBe(uuid);
            expect(blkidUuid(ours)).toMatch(
              /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
            );
          } else {
            expect(blkidUuid(ours)).toBe(uuid);
          }
        },
        BOOT_TIMEOUT_MS + 120_000,
      );
    }
  },
);
