/**
 * Proof by boot: edits Debian guest images with the real `imgpatch` bin, boots them under qemu (TCG)
 * and reads the markers the guest prints on its serial console.
 *
 *   npm run e2e:boot                 whole suite
 *   npm run e2e:boot -- --fast       the CI subset (see README.md)
 *   npm run e2e:boot -- --only NAME  one scenario (bare | gpt-overlay | elements | xfs | deb-agents | selinux)
 *   npm run e2e:boot -- --keep       keep the work directory (images, serial logs)
 *   npm run e2e:boot -- --no-build   use packages/cli/dist as it is (default: `npm run build` first)
 *
 * A boot is bounded twice: the guest's own guard unit powers it off after e2e.guard seconds, and the
 * driver kills its qemu (by PID) after a hard timeout. "did not boot" (no `@@E2E booted` line) and
 * "marker missing" (booted, marker absent) are reported apart.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, "../..");
const CACHE =
  process.env.IMGPATCH_E2E_CACHE ??
  join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "imgpatch-e2e");
const GUEST = join(HERE, "guest");
/** The imgpatch bin under test (IMGPATCH_E2E_BIN: another build of it, e.g. a clean worktree's). */
const IMGPATCH = process.env.IMGPATCH_E2E_BIN ?? join(REPO, "packages/cli/dist/bundle/imgpatch.js");
const DEMO_RPM = join(REPO, "test-fixtures/rpm/out/imgpatch-demo-gzip.noarch.rpm");
const MAIN_JOB_ELEMENTS = [
  "selinux-permissive",
  "os-collect-config",
  "os-refresh-config",
  "os-apply-config",
  "heat-config",
  "heat-config-script",
];

const args = process.argv.slice(2);
const FAST = args.includes("--fast");
const KEEP = args.includes("--keep");
const ONLY = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
/** Seconds: guard inside the guest, hard kill outside it (boot under TCG takes ~20 s here). */
// The elements guest configures its build-time Debian packages at first boot (~140 s under TCG).
const GUARD_S = Number(process.env.IMGPATCH_E2E_GUARD ?? 300);
// The Heat agents' guest configures ~300 packages (py3compile of every Python module) at first boot.
const AGENTS_GUARD_S = Math.max(GUARD_S, Number(process.env.IMGPATCH_E2E_AGENTS_GUARD ?? 3000));

const t0 = Date.now();
const since = (t: number) => ((Date.now() - t) / 1000).toFixed(1);
const say = (s: string) => console.log(`[e2e ${since(t0).padStart(6)}s] ${s}`);

interface Result {
  scenario: string;
  marker: string;
  ok: boolean;
  seconds?: number;
  detail: string;
}
const results: Result[] = [];
function record(r: Result) {
  results.push(r);
  const t = r.seconds === undefined ? "" : ` (${r.seconds.toFixed(1)} s)`;
  console.log(`${r.ok ? "PASS" : "FAIL"} ${r.scenario}: ${r.marker}${t}${r.detail ? ` — ${r.detail}` : ""}`);
}

function run(cmd: string, argv: string[], opts: { quiet?: boolean; cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { maxBuffer: 64 << 20, cwd: opts.cwd }, (err, stdout, stderr) => {
      if (err) {
        reject(
          new Error(
            `${cmd} ${argv.join(" ")} failed: ${String(stderr || err.message)
              .trim()
              .slice(-2000)}`,
          ),
        );
        return;
      }
      if (!opts.quiet && stderr.trim()) process.stderr.write(stderr);
      resolve(stdout);
    });
  });
}

async function imgpatch(argv: string[]): Promise<string> {
  const t = Date.now();
  const out = await run(process.execPath, [IMGPATCH, ...argv], { quiet: true });
  say(`imgpatch ${argv[0]} ${argv[1] ? argv[1].replace(`${CACHE}/`, "") : ""} … (${since(t)} s)`);
  return out;
}

async function sha256File(path: string): Promise<string> {
  return (await run("sha256sum", [path])).split(" ")[0];
}

// ---------------------------------------------------------------------------------------------
// Booting

interface Boot {
  /** Marker name → seconds after qemu start, and its PASS/FAIL word and detail. */
  markers: Map<string, { seconds: number; ok: boolean; detail: string }>;
  data: string[];
  booted?: number;
  /** Kernel/initramfs lines that explain a failed boot (ext4 errors, failed root mount, panic). */
  notes: string[];
  exit: string;
  seconds: number;
  log: string;
}

async function boot(
  name: string,
  disks: string[],
  root: string,
  guardS = GUARD_S,
  append = "",
): Promise<Boot> {
  const hardTimeoutS = guardS + 90;
  const log = join(work, `${name}.serial.log`);
  const logStream = createWriteStream(log);
  const qemuArgs = [
    "-accel",
    "tcg",
    "-m",
    "1024",
    "-smp",
    "1",
    "-nographic",
    "-monitor",
    "none",
    "-no-reboot",
    "-kernel",
    join(CACHE, "vmlinuz"),
    "-initrd",
    join(CACHE, "initrd.img"),
    "-append",
    `root=${root} rw console=ttyS0 panic=-1 loglevel=4 systemd.show_status=0 e2e.guard=${guardS}${append}`,
    ...disks.flatMap((d) => ["-drive", `file=${d},if=virtio,format=qcow2,cache=unsafe`]),
    "-nic",
    "none",
  ];
  const start = Date.now();
  const b: Boot = { markers: new Map(), data: [], notes: [], exit: "", seconds: 0, log };
  const qemu: ChildProcess = spawn("qemu-system-x86_64", qemuArgs, { stdio: ["ignore", "pipe", "pipe"] });
  say(`${name}: qemu pid ${qemu.pid} (${disks.length} disk(s), root=${root})`);
  const kill = (why: string) => {
    if (qemu.exitCode === null && qemu.signalCode === null && qemu.pid) {
      b.exit = why;
      try {
        process.kill(qemu.pid, "SIGKILL");
      } catch {}
    }
  };
  const onSignal = () => {
    kill("interrupted");
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const timer = setTimeout(
    () => kill(`killed after the ${hardTimeoutS} s hard timeout`),
    hardTimeoutS * 1000,
  );
  let pending = "";
  let stderr = "";
  const onLine = (raw: string) => {
    const line = raw.replace(/\r/g, "");
    const at = (Date.now() - start) / 1000;
    const d = line.indexOf("@@E2E-DATA ");
    if (d >= 0) {
      b.data.push(line.slice(d + 11));
      return;
    }
    const m = /@@E2E (\S+)(?: (PASS|FAIL))?(?: (.*))?$/.exec(line);
    if (!m) {
      if (
        /EXT4-fs.*(error|warning)|Failed to mount|Kernel panic|VFS: |reboot: Restarting|Gave up waiting/.test(
          line,
        )
      )
        b.notes.push(line.trim().slice(0, 200));
      return;
    }
    if (m[1] === "booted") {
      b.booted ??= at;
      return;
    }
    if (!b.markers.has(m[1])) b.markers.set(m[1], { seconds: at, ok: m[2] === "PASS", detail: m[3] ?? "" });
  };
  qemu.stdout?.on("data", (chunk: Buffer) => {
    logStream.write(chunk);
    pending += chunk.toString("latin1");
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const l of lines) onLine(l);
  });
  qemu.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const code = await new Promise<string>((resolve) => {
    qemu.on("error", (e) => resolve(`could not start qemu: ${e.message}`));
    qemu.on("exit", (c, s) => resolve(c === 0 ? "powered off" : `qemu exited ${c ?? s}`));
  });
  clearTimeout(timer);
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  kill("cleanup");
  if (pending) onLine(pending);
  await new Promise<void>((r) => logStream.end(r));
  b.exit ||= code;
  if (b.notes.some((n) => /reboot: Restarting|Kernel panic/.test(n)))
    b.exit = `guest panicked/rebooted (${b.exit})`;
  if (stderr.trim()) b.exit += ` (qemu: ${stderr.trim().slice(0, 300)})`;
  b.seconds = (Date.now() - start) / 1000;
  say(`${name}: ${b.exit} after ${b.seconds.toFixed(1)} s; booted at ${b.booted?.toFixed(1) ?? "never"} s`);
  return b;
}

/** Records expected markers of a boot: PASS, FAIL (marker said so), or missing / did not boot. */
function expect(scenario: string, b: Boot, names: string[]) {
  // The check unit only runs in multi-user.target's transaction: its marker also proves the boot.
  b.booted ??= b.markers.get("unit-ran")?.seconds;
  if (b.booted === undefined) {
    record({
      scenario,
      marker: "boot",
      ok: false,
      detail: `did not boot (${b.exit}): ${b.notes.slice(-4).join(" | ")}; serial log ${b.log}`,
    });
  } else {
    record({ scenario, marker: "boot (multi-user.target)", ok: true, seconds: b.booted, detail: "" });
  }
  for (const n of names) {
    const m = b.markers.get(n);
    if (m) record({ scenario, marker: n, ok: m.ok, seconds: m.seconds, detail: m.detail });
    else
      record({
        scenario,
        marker: n,
        ok: false,
        detail: b.booted === undefined ? "did not boot" : `marker missing (${b.exit}); serial log ${b.log}`,
      });
  }
  const guard = b.markers.get("guard-timeout");
  if (guard) record({ scenario, marker: "no guard timeout", ok: false, seconds: guard.seconds, detail: "" });
  record({
    scenario,
    marker: "clean power-off",
    ok: b.exit === "powered off",
    seconds: b.seconds,
    detail: b.exit === "powered off" ? "" : b.exit,
  });
}

// ---------------------------------------------------------------------------------------------
// Common injection: the check runner, its unit (enabled by imgpatch), and the scenario's checks.

function checkOps(checks: string[]): string[] {
  const ops = [
    "--mkdir",
    "/etc/e2e/checks.d",
    "--upload",
    `${join(GUEST, "e2e-check")}:/usr/local/sbin/e2e-check`,
    "--chmod",
    "0755:/usr/local/sbin/e2e-check",
    "--upload",
    `${join(GUEST, "e2e-check.service")}:/etc/systemd/system/e2e-check.service`,
    "--enable",
    "e2e-check.service",
  ];
  for (const c of checks) ops.push("--upload", `${join(GUEST, "checks", c)}:/etc/e2e/checks.d/${c}`);
  return ops;
}

let work = "";

// Scenario: bare-filesystem qcow2 root + an imgpatch-edited data disk (large edit), e2fsck in guest.
async function scenarioBare() {
  const S = "bare";
  const out = join(work, "bare-out.qcow2");
  await imgpatch(["customize", join(CACHE, "bare.qcow2"), "-o", out, ...checkOps(["datadisk.sh"])]);
  // --fast: a smaller edit (same shapes) so e2fsck-in-guest and the read-back stay in the CI subset.
  const large = join(work, "large");
  const t = Date.now();
  const n = await makeLargeTree(large, FAST ? { dirs: 5, dirEntries: 2000, bigMiB: 16 } : undefined);
  say(`large tree: ${n} files (${since(t)} s)`);
  const data = join(work, "data-out.qcow2");
  await imgpatch([
    "customize",
    join(CACHE, "data.qcow2"),
    "-o",
    data,
    "-m",
    "/dev/sda:/",
    "--copy-in",
    `${large}:/`,
  ]);
  const disks = [out, data];
  const names = ["unit-ran", "datadisk-e2fsck", "large-edit", "dmesg-ext4", "checks-done"];
  const b = await boot(S, disks, "/dev/vda");
  expect(S, b, names);
}

/** A few thousand files in nested dirs, a 200 MiB file, a 10,000-entry directory, and the manifest. */
async function makeLargeTree(
  dir: string,
  size = { dirs: 30, dirEntries: 10000, bigMiB: 200 },
): Promise<number> {
  const root = dir; // copied in as /large (virt-customize --copy-in copies the directory itself)
  await rm(dir, { recursive: true, force: true });
  const manifest: string[] = [];
  const put = async (rel: string, data: Buffer) => {
    await mkdir(dirname(join(root, rel)), { recursive: true });
    await writeFile(join(root, rel), data);
    manifest.push(`${createHash("sha256").update(data).digest("hex")}  ./${rel}`);
  };
  const content = (seed: string, size: number) => {
    const out = Buffer.alloc(size);
    let off = 0;
    let i = 0;
    while (off < size) {
      const h = createHash("sha256").update(`${seed}:${i++}`).digest();
      off += h.copy(out, off);
    }
    return out;
  };
  for (let d = 0; d < size.dirs; d++)
    for (let f = 0; f < 100; f++)
      await put(`tree/d${d}/s${f % 7}/f${f}.dat`, content(`t${d}/${f}`, (f * 97 + d * 13) % 9000));
  for (let i = 0; i < size.dirEntries; i++)
    await put(`dir10k/entry-${String(i).padStart(5, "0")}`, Buffer.from(`entry ${i}\n`));
  // 200 MiB of pseudo-random data (no zero runs a sparse writer could skip), streamed.
  {
    const path = join(root, "big.bin");
    const h = createHash("sha256");
    const ws = createWriteStream(path);
    const chunk = 1 << 20;
    for (let i = 0; i < size.bigMiB; i++) {
      const block = content(`big${i}`, chunk);
      h.update(block);
      if (!ws.write(block)) await new Promise<void>((r) => ws.once("drain", () => r()));
    }
    await new Promise<void>((r, j) => ws.end((e?: Error | null) => (e ? j(e) : r())));
    manifest.push(`${h.digest("hex")}  ./big.bin`);
  }
  await writeFile(join(root, "MANIFEST.sha256"), `${manifest.join("\n")}\n`);
  await writeFile(join(root, "EXPECT"), `${size.dirEntries} ${size.bigMiB * 1048576}\n`);
  return manifest.length;
}

// Scenario: GPT disk (compressed qcow2) edited through an overlay; first-boot scripts and an RPM.
async function scenarioGptOverlay() {
  const S = "gpt-overlay";
  const base = join(work, "gpt-base.qcow2");
  await run("cp", [join(CACHE, "gpt.qcow2"), base]);
  const before = await sha256File(base);
  const ov = join(work, "gpt-overlay.qcow2");
  const fb = join(work, "fb");
  await mkdir(fb, { recursive: true });
  const fbScript = (n: string) =>
    `#!/bin/sh\nmkdir -p /var/lib/e2e\necho "${n} $(cat /proc/sys/kernel/random/boot_id)" >> /var/lib/e2e/firstboot.log\necho "e2e ${n} ran"\n`;
  await writeFile(join(fb, "fb-one"), fbScript("fb-one"));
  await writeFile(join(fb, "fb-two"), fbScript("fb-two"));
  const rpmPaths = await rpmExpectations();
  await writeFile(join(work, "rpm-paths"), `${[...rpmPaths.keys()].join("\n")}\n`);
  const ops = [
    ...checkOps(["firstboot.sh", "rpm.sh"]),
    "--upload",
    `${join(GUEST, "rpmlua")}:/usr/local/bin/rpmlua`,
    "--chmod",
    "0755:/usr/local/bin/rpmlua",
    "--upload",
    `${join(work, "rpm-paths")}:/etc/e2e/rpm-paths`,
    "--firstboot",
    join(fb, "fb-one"),
    "--rpm-owner-fallback",
    "--rpm",
    DEMO_RPM,
    "--firstboot",
    join(fb, "fb-two"),
    "--firstboot-command",
    `echo "fb-three $(cat /proc/sys/kernel/random/boot_id)" >> /var/lib/e2e/firstboot.log`,
  ];
  await imgpatch(["customize", base, "--overlay", ov, ...ops]);
  const afterEdit = await sha256File(base);
  record({
    scenario: S,
    marker: "base untouched by imgpatch --overlay",
    ok: before === afterEdit,
    detail: `sha256 ${before.slice(0, 16)}… → ${afterEdit.slice(0, 16)}…`,
  });
  const b1 = await boot(`${S}-boot1`, [ov], "/dev/vda1");
  expect(`${S} boot 1`, b1, [
    "unit-ran",
    "firstboot-once-in-order",
    "rpm-scriptlets",
    "dmesg-ext4",
    "checks-done",
  ]);
  compareRpm(`${S} boot 1`, b1, rpmPaths);
  if (!FAST) {
    const b2 = await boot(`${S}-boot2`, [ov], "/dev/vda1");
    expect(`${S} boot 2`, b2, ["unit-ran", "firstboot-not-rerun", "dmesg-ext4", "checks-done"]);
  }
  const afterBoot = await sha256File(base);
  record({
    scenario: S,
    marker: "base untouched after booting the overlay",
    ok: before === afterBoot,
    detail: `sha256 ${afterBoot.slice(0, 16)}…`,
  });
}

interface RpmEntry {
  mode: number;
  user: string;
  group: string;
  size: number;
  digest: string;
  link: string;
}

/** What the package says, from `rpm -qp --dump` (ghost files are not in the payload: left out). */
async function rpmExpectations(): Promise<Map<string, RpmEntry>> {
  const dump = await run("rpm", ["-qp", "--dump", DEMO_RPM]);
  const flags = await run("rpm", ["-qp", "--qf", "[%{FILEFLAGS}\\n]", DEMO_RPM]);
  const fl = flags.trim().split("\n").map(Number);
  const out = new Map<string, RpmEntry>();
  dump
    .trim()
    .split("\n")
    .forEach((line, i) => {
      // path size mtime digest mode owner group isconfig isdoc rdev symlink — path may hold spaces.
      const f = line.split(" ");
      const tail = f.slice(-10);
      const path = f.slice(0, -10).join(" ");
      if ((fl[i] ?? 0) & 64) return; // %ghost
      out.set(path, {
        size: Number(tail[0]),
        digest: tail[2],
        mode: Number.parseInt(tail[3], 8),
        user: tail[4],
        group: tail[5],
        link: tail[9],
      });
    });
  return out;
}

function compareRpm(scenario: string, b: Boot, expected: Map<string, RpmEntry>) {
  const seen = new Map<string, string[]>();
  for (const d of b.data) {
    if (!d.startsWith("rpm|")) continue;
    const f = d.split("|");
    seen.set(f[1], f.slice(2));
  }
  const problems: string[] = [];
  const inodes = new Map<string, string[]>();
  for (const [path, e] of expected) {
    const g = seen.get(path);
    if (!g) {
      problems.push(`${path}: no data from guest`);
      continue;
    }
    if (g[0] === "MISSING") {
      problems.push(`${path}: missing in guest`);
      continue;
    }
    // %f raw mode (hex) | %a | %U | %G | %s | %i | %h | sha256-or-link
    const [fmode, , user, group, size, ino, , extra] = g;
    const mode = Number.parseInt(fmode, 16);
    if (mode !== e.mode) problems.push(`${path}: mode ${mode.toString(8)} != ${e.mode.toString(8)}`);
    if (user !== e.user || group !== e.group)
      problems.push(`${path}: owner ${user}:${group} != ${e.user}:${e.group}`);
    const type = e.mode & 0o170000;
    if (type === 0o100000) {
      if (Number(size) !== e.size) problems.push(`${path}: size ${size} != ${e.size}`);
      if (extra !== e.digest) problems.push(`${path}: sha256 ${extra} != ${e.digest}`);
      if (e.size > 0 && e.digest !== "0".repeat(64)) {
        const k = `${e.digest}`;
        inodes.set(k, [...(inodes.get(k) ?? []), `${ino}`]);
      }
    } else if (type === 0o120000 && extra !== e.link) problems.push(`${path}: link ${extra} != ${e.link}`);
  }
  // Hard links in the package (same digest, same content): one inode in the guest.
  const hl = [...expected].filter(([p]) => /\/hl\d$/.test(p)).map(([p]) => seen.get(p)?.[5]);
  if (hl.length > 1 && new Set(hl).size !== 1)
    problems.push(`hard links hl1/hl2/hl3 on inodes ${hl.join(",")}`);
  record({
    scenario,
    marker: "rpm-payload (guest stat/sha256sum vs rpm -qp --dump)",
    ok: problems.length === 0 && seen.size > 0,
    detail: problems.length ? problems.slice(0, 6).join("; ") : `${expected.size} entries match`,
  });
}

// Scenario: the main job — stand-in Heat elements baked onto the Debian guest (GPT, -o).
async function scenarioElements() {
  const S = "elements";
  const gold = join(work, "software-deployment-image-gold.qcow2");
  const elementsPath = `${join(REPO, "test-fixtures/elements")}:${join(GUEST, "elements")}`;
  await imgpatch([
    "elements",
    join(CACHE, "gpt.qcow2"),
    "-o",
    gold,
    "--elements-path",
    elementsPath,
    ...MAIN_JOB_ELEMENTS,
    "e2e-occ-standin",
  ]);
  await imgpatch([
    "customize",
    gold,
    "--in-place",
    ...checkOps(["elements.sh"]),
    "--upload",
    `${join(GUEST, "e2e-fake-pkg")}:/usr/local/sbin/e2e-fake-pkg`,
    "--chmod",
    "0755:/usr/local/sbin/e2e-fake-pkg",
    "--mkdir",
    "/etc/systemd/system/imgpatch-firstboot.service.d",
    "--write",
    "/etc/systemd/system/imgpatch-firstboot.service.d/e2e-offline.conf:[Service]\nEnvironment=IMGPATCH_PKG_CMD=/usr/local/sbin/e2e-fake-pkg\n",
  ]);
  const b = await boot(S, [gold], "/dev/vda1");
  expect(S, b, [
    "unit-ran",
    "occ-started",
    "occ-after-firstboot",
    "elements-firstboot",
    "dmesg-ext4",
    "checks-done",
  ]);
}

// Scenario: the Heat agents' Debian packages given to the Debian guest by `customize --install`
// (resolved, downloaded and unpacked at build time), configured by its first boot.
const AGENTS = ["python3-os-collect-config", "python3-os-apply-config", "python3-os-refresh-config"];

/** The archive this machine's apt uses for SUITE main (read from apt at run time, never stored). */
async function hostArchive(suite: string): Promise<string> {
  const out = await run("apt-get", ["indextargets", "--format", "$(REPO_URI) $(RELEASE) $(COMPONENT)"]);
  for (const line of out.split("\n")) {
    const [uri, release, component] = line.trim().split(" ");
    if (release === suite && component === "main") return uri;
  }
  throw new Error(`this machine's apt has no ${suite} main source (apt-get indextargets)`);
}

/** Names of the packages whose dpkg status is exactly WANT ("install ok unpacked" …). */
function packagesWithStatus(status: string, want: string): string[] {
  const names: string[] = [];
  for (const stanza of status.split(/\n\n+/)) {
    const name = /^Package: (\S+)$/m.exec(stanza)?.[1];
    if (name && new RegExp(`^Status: ${want}$`, "m").test(stanza)) names.push(name);
  }
  return names;
}

async function scenarioDebAgents() {
  const S = "deb-agents";
  const base = join(work, "agents-base.qcow2");
  await run("cp", [join(CACHE, "gpt.qcow2"), base]);
  const before = await sha256File(base);
  const ov = join(work, "agents-overlay.qcow2");
  const uri = await hostArchive("bookworm");
  const t = Date.now();
  await imgpatch([
    "customize",
    base,
    "--overlay",
    ov,
    "--repo",
    `deb ${uri} bookworm main`,
    "--install",
    AGENTS.join(","),
    ...checkOps(["deb-agents.sh"]),
  ]);
  const status = await imgpatch(["cat", ov, "/var/lib/dpkg/status"]);
  const unpacked = packagesWithStatus(status, "install ok unpacked");
  const missing = AGENTS.filter((a) => !unpacked.includes(a));
  record({
    scenario: S,
    marker: "customize --install (build time)",
    ok: unpacked.length > AGENTS.length && missing.length === 0,
    seconds: (Date.now() - t) / 1000,
    detail: `${unpacked.length} packages unpacked, "install ok unpacked"${missing.length ? `; agents missing: ${missing.join(" ")}` : ""}`,
  });
  // The list the guest checks with dpkg -s after its first boot configured them.
  await writeFile(join(work, "deb-installed"), `${unpacked.join("\n")}\n`);
  await imgpatch([
    "customize",
    ov,
    "--in-place",
    "--upload",
    `${join(work, "deb-installed")}:/etc/e2e/deb-installed`,
  ]);
  record({
    scenario: S,
    marker: "base untouched by imgpatch --overlay",
    ok: (await sha256File(base)) === before,
    detail: "",
  });
  const b = await boot(S, [ov], "/dev/vda1", AGENTS_GUARD_S);
  expect(S, b, [
    "unit-ran",
    "deb-firstboot-configure",
    "dpkg-audit",
    "dpkg-status",
    "occ-help",
    "dmesg-ext4",
    "checks-done",
  ]);
}

// Scenario: XFS guest (GPT: XFS /boot in p1, XFS / in p2, both by mkfs.xfs -p) edited through an
// overlay on both volumes; the kernel mounts them, reads the edits back and writes after them.
async function scenarioXfs() {
  const S = "xfs";
  const base = join(work, "xfs-base.qcow2");
  await run("cp", [join(CACHE, "xfs.qcow2"), base]);
  const before = await sha256File(base);
  const ov = join(work, "xfs-overlay.qcow2");
  await imgpatch([
    "customize",
    base,
    "--overlay",
    ov,
    ...checkOps(["xfsroot.sh"]),
    "--mkdir",
    "/opt/e2e",
    "--write",
    "/opt/e2e/hello:hello from imgpatch",
    "--chmod",
    "0640:/opt/e2e/hello",
    "--link",
    "hello:/opt/e2e/hello.link",
    "--write",
    "/boot/e2e-marker:boot volume edited",
    "--delete",
    "/boot/README.e2e",
  ]);
  record({
    scenario: S,
    marker: "base unchanged by imgpatch",
    ok: (await sha256File(base)) === before,
    detail: "",
  });
  const b = await boot(S, [ov], "/dev/vda2");
  expect(S, b, ["unit-ran", "xfs-root", "xfs-boot", "xfs-guest-write", "dmesg-xfs", "checks-done"]);
  // After the guest wrote and powered off: xfs_repair -n (through imgpatch check) on both volumes,
  // and imgpatch reads what the kernel wrote.
  const check = await imgpatch(["check", ov]).catch((e: Error) => e.message);
  const clean = (check.match(/xfs_repair -n -f: clean/g) ?? []).length;
  record({
    scenario: S,
    marker: "xfs_repair -n after the boot",
    ok: clean === 2,
    detail: `${clean}/2 volumes clean`,
  });
  const guestWrote = await imgpatch(["cat", ov, "/opt/e2e/written-by-guest"]).catch((e: Error) => e.message);
  record({
    scenario: S,
    marker: "imgpatch reads the guest's write",
    ok: guestWrote === "guest\n",
    detail: JSON.stringify(guestWrote.slice(0, 60)),
  });
}

// Scenario: a Debian guest with SELinux enforcing (refpolicy, labelled by setfiles at build time),
// edited through an overlay with no relabel of any kind: the policy enforces from the first boot and
// the guest's own matchpathcon/restorecon judge every label imgpatch wrote.
async function scenarioSelinux() {
  const S = "selinux";
  await new Promise<void>((resolve, reject) => {
    const p = spawn("bash", [join(HERE, "build-guest-selinux.sh")], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    p.on("exit", (c) => (c === 0 ? resolve() : reject(new Error(`build-guest-selinux.sh exited ${c}`))));
    p.on("error", reject);
  });
  const base = join(CACHE, "selinux.qcow2");
  const before = await sha256File(base);
  const ov = join(work, "selinux-overlay.qcow2");
  // Every path the edit creates, for the guest's check (the check list itself is one of them).
  const created = [
    "/usr/local/sbin/e2e-check",
    "/etc/systemd/system/e2e-check.service",
    "/etc/systemd/system/multi-user.target.wants/e2e-check.service",
    "/etc/e2e",
    "/etc/e2e/checks.d",
    "/etc/e2e/checks.d/selinux.sh",
    "/etc/e2e/selinux-paths",
    "/opt/e2e",
    "/opt/e2e/hello",
    "/srv/e2e-web",
    "/srv/e2e-web/index.html",
    "/usr/local/bin/e2e-tool",
    "/var/log/e2e",
    "/var/log/e2e/imgpatch.log",
    "/etc/e2e-motd",
  ];
  await writeFile(join(work, "selinux-paths"), `${created.join("\n")}\n`);
  await imgpatch([
    "customize",
    base,
    "--overlay",
    ov,
    ...checkOps(["selinux.sh"]),
    "--upload",
    `${join(work, "selinux-paths")}:/etc/e2e/selinux-paths`,
    "--mkdir",
    "/opt/e2e",
    "--write",
    "/opt/e2e/hello:hello from imgpatch",
    "--mkdir",
    "/srv/e2e-web",
    "--write",
    "/srv/e2e-web/index.html:served by imgpatch",
    "--write",
    "/usr/local/bin/e2e-tool:#!/bin/sh\necho tool",
    "--chmod",
    "0755:/usr/local/bin/e2e-tool",
    "--mkdir",
    "/var/log/e2e",
    "--write",
    "/var/log/e2e/imgpatch.log:edited offline",
    "--write",
    "/etc/e2e-motd:labelled without a relabel",
    // The control that shows the checks can fail: the same edit with no labels written.
    ...(process.env.IMGPATCH_E2E_SELINUX_NO_LABELS === "1" ? ["--no-selinux-labels"] : []),
  ]);
  const relabel = await imgpatch(["cat", ov, "/.autorelabel"]).then(
    () => "present",
    () => "absent",
  );
  record({ scenario: S, marker: "no /.autorelabel written", ok: relabel === "absent", detail: relabel });
  record({
    scenario: S,
    marker: "base unchanged by imgpatch",
    ok: (await sha256File(base)) === before,
    detail: "",
  });
  const b = await boot(S, [ov], "/dev/vda", GUARD_S, " security=selinux selinux=1");
  expect(S, b, [
    "unit-ran",
    "selinux-enforcing",
    "selinux-labels",
    "selinux-avc",
    "selinux-read",
    "dmesg-ext4",
    "checks-done",
  ]);
}

// ---------------------------------------------------------------------------------------------

async function main() {
  if (!args.includes("--no-build")) {
    say("npm run build (the imgpatch bin under test is the bundle in packages/cli/dist/bundle)");
    await run("npm", ["run", "build", "--silent"], { cwd: REPO });
  }
  if (!existsSync(IMGPATCH)) throw new Error(`${IMGPATCH} is missing: run \`npm run build\` first`);
  say(`building/caching the Debian guest in ${CACHE}`);
  const tb = Date.now();
  await new Promise<void>((resolve, reject) => {
    const p = spawn("bash", [join(HERE, "build-guest.sh")], { stdio: ["ignore", "inherit", "inherit"] });
    p.on("exit", (c) => (c === 0 ? resolve() : reject(new Error(`build-guest.sh exited ${c}`))));
    p.on("error", reject);
  });
  say(`guest ready (${since(tb)} s)`);
  work = await mkdtemp(join(process.env.IMGPATCH_E2E_WORK ?? tmpdir(), "imgpatch-e2e-"));
  await chmod(work, 0o755);
  const scenarios: Array<[string, () => Promise<void>]> = [
    ["gpt-overlay", scenarioGptOverlay],
    ["bare", scenarioBare],
    ["elements", scenarioElements],
    ["xfs", scenarioXfs],
    ["deb-agents", scenarioDebAgents],
    ["selinux", scenarioSelinux],
  ];
  for (const [name, fn] of scenarios) {
    if (ONLY && ONLY !== name) continue;
    // --fast (CI) leaves out the slowest boot: the agents' guest configures ~280 packages first.
    if (FAST && !ONLY && name === "deb-agents") {
      say("scenario deb-agents: not in --fast (run it with --only deb-agents)");
      continue;
    }
    const ts = Date.now();
    try {
      await fn();
    } catch (e) {
      record({ scenario: name, marker: "setup", ok: false, detail: (e as Error).message.split("\n")[0] });
    }
    say(`scenario ${name}: ${since(ts)} s`);
  }
  const failed = results.filter((r) => !r.ok);
  console.log(
    `\n${failed.length === 0 ? "ALL PASS" : `${failed.length} FAILED`}: ${results.length} checks in ${since(t0)} s${FAST ? " (--fast)" : ""}`,
  );
  for (const f of failed) console.log(`  FAIL ${f.scenario}: ${f.marker} — ${f.detail}`);
  if (KEEP || failed.length > 0) console.log(`work directory kept: ${work}`);
  else await rm(work, { recursive: true, force: true });
  process.exitCode = failed.length === 0 ? 0 : 1;
}

await main();
