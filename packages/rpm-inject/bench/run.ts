// Injecting a ~50 MiB xz RPM vs `rpm2cpio pkg | cpio -idm` (the C tools extracting into a plain
// directory), same run, same tmpfs. The ext4 editor does not exist yet, so our side writes through
// HostDirTarget into the same kind of directory (and, separately, into MemoryTarget).
//   npm run bench -w packages/rpm-inject
//   BENCH_SIZE_MIB=20 BENCH_DIR=/tmp npm run bench -w packages/rpm-inject
// Ratio = our time / their time (target: ≤ 1.5). Each side runs twice, alternating; best counts.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HostDirTarget, injectRpm, MemoryTarget, readRpm } from "../src/index.js";

const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 50);
const base = process.env.BENCH_DIR ?? (existsSync("/dev/shm") ? "/dev/shm" : tmpdir());
const dir = mkdtempSync(join(base, "imgpatch-rpm-bench-"));

function sh(cmd: string): number {
  const t0 = performance.now();
  const r = spawnSync("sh", ["-c", cmd], { stdio: ["ignore", "ignore", "pipe"] });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  return performance.now() - t0;
}

function buildPackage(): string {
  const top = join(dir, "top");
  const spec = join(dir, "bench.spec");
  const files = Math.max(1, Math.round(sizeMiB * 4)); // 256 KiB files
  writeFileSync(
    spec,
    `Name: imgpatch-bench
Version: 1
Release: 1
Summary: bench
License: Apache-2.0
BuildArch: noarch
%description
bench
%install
mkdir -p %{buildroot}/opt/bench
i=0; while [ $i -lt ${files} ]; do
  awk -v s=$i 'BEGIN{srand(s); for(l=0;l<4096;l++){ line=""; for(w=0;w<8;w++) line=line sprintf("%x ", int(rand()*1e9)); print line }}' > %{buildroot}/opt/bench/f$i.txt
  i=$((i+1))
done
%files
/opt/bench
`,
  );
  const r = spawnSync(
    "rpmbuild",
    [
      "-bb",
      "--quiet",
      "--define",
      `_topdir ${top}`,
      "--define",
      "_binary_payload w6.xzdio",
      "--define",
      "__os_install_post %{nil}",
      spec,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  if (r.status !== 0) throw new Error(`rpmbuild failed: ${r.stderr}`);
  const rpmDir = join(top, "RPMS", "noarch");
  return join(rpmDir, readdirSync(rpmDir)[0]);
}

async function main() {
  console.log(`building a ~${sizeMiB} MiB xz RPM in ${dir} ...`);
  const pkgPath = buildPackage();
  const times = { theirs: Infinity, ours: Infinity, memory: Infinity };
  for (let round = 0; round < 2; round++) {
    const t = join(dir, `theirs-${round}`);
    mkdirSync(t);
    times.theirs = Math.min(times.theirs, sh(`cd ${t} && rpm2cpio ${pkgPath} | cpio -idm --quiet`));
    rmSync(t, { recursive: true });

    const o = join(dir, `ours-${round}`);
    mkdirSync(o);
    let t0 = performance.now();
    const pkg = await readRpm(pkgPath);
    await injectRpm(pkg, new HostDirTarget(o), { missingOwner: "root" });
    await pkg.close();
    times.ours = Math.min(times.ours, performance.now() - t0);
    rmSync(o, { recursive: true });

    t0 = performance.now();
    const pkg2 = await readRpm(pkgPath);
    await injectRpm(pkg2, new MemoryTarget(), { missingOwner: "root" });
    await pkg2.close();
    times.memory = Math.min(times.memory, performance.now() - t0);
  }
  const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  console.log(`rpm2cpio | cpio -idm        ${fmt(times.theirs)}`);
  console.log(
    `injectRpm → HostDirTarget   ${fmt(times.ours)}   ratio ${(times.ours / times.theirs).toFixed(2)} (target ≤ 1.5)`,
  );
  console.log(
    `injectRpm → MemoryTarget    ${fmt(times.memory)}   ratio ${(times.memory / times.theirs).toFixed(2)}`,
  );
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => {
    if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
  });
