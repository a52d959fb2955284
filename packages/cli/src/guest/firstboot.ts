/**
 * First-boot scripts: a queue of numbered scripts run once, in order, by a oneshot systemd unit at the
 * next boot (shared by `--firstboot`, `--firstboot-command`, the elements' deferred phases and
 * rpm-inject's deferred scriptlets).
 *
 * Layout in the guest:
 *   /usr/lib/imgpatch/firstboot/runner.sh          the runner (POSIX sh)
 *   /var/lib/imgpatch/firstboot/pending/NNNNNN-x  scripts still to run (0700 dir, scripts 0755)
 *   /var/lib/imgpatch/firstboot/done/             scripts that ran and exited 0
 *   /var/lib/imgpatch/firstboot/failed/           scripts that exited non-zero
 *   /var/lib/imgpatch/firstboot/complete          stamp: written when nothing is pending or failed
 *   /var/log/imgpatch-firstboot.log               a copy of everything the scripts printed
 *   /etc/systemd/system/imgpatch-firstboot.service + its multi-user.target.wants link
 *
 * Failure policy (decided here, like virt-customize's firstboot): a failing script is logged and moved
 * to failed/, and the runner goes on with the next one, so unrelated scripts still run. The unit then
 * exits 1 on this and every later boot while failed/ is not empty, so `systemctl --failed` shows it and
 * units that `Requires=` it do not start; the completion stamp is only written when failed/ is empty.
 * To retry, fix the cause and move the script back to pending/. A script interrupted by a crash is
 * still in pending/ and runs again at the next boot.
 */

import { ensureDir, lstatOrNull } from "./fs-util.js";
import type { GuestFs } from "./guest-fs.js";
import { enableUnit, UNIT_SEARCH_PATHS } from "./systemd-install.js";

export const FIRSTBOOT = {
  runner: "/usr/lib/imgpatch/firstboot/runner.sh",
  state: "/var/lib/imgpatch/firstboot",
  pending: "/var/lib/imgpatch/firstboot/pending",
  done: "/var/lib/imgpatch/firstboot/done",
  failed: "/var/lib/imgpatch/firstboot/failed",
  stamp: "/var/lib/imgpatch/firstboot/complete",
  log: "/var/log/imgpatch-firstboot.log",
  unitName: "imgpatch-firstboot.service",
  unitPath: "/etc/systemd/system/imgpatch-firstboot.service",
} as const;

/** The runner. IMGPATCH_FIRSTBOOT_ROOT prefixes every path (tests run it against a host directory). */
export function firstbootRunnerScript(): string {
  return `#!/bin/sh
# imgpatch first-boot runner: runs each pending script once, in name order, then moves it to done/
# (exit 0) or failed/ (non-zero). Output goes to stdout/stderr (the journal, under systemd) and to the
# log file. Exits 1 while any script is in failed/; writes the completion stamp otherwise.
LC_ALL=C
export LC_ALL
root="\${IMGPATCH_FIRSTBOOT_ROOT:-}"
export IMGPATCH_FIRSTBOOT_ROOT="$root"
state="$root${FIRSTBOOT.state}"
pending="$state/pending"
done_dir="$state/done"
failed_dir="$state/failed"
stamp="$root${FIRSTBOOT.stamp}"
log="$root${FIRSTBOOT.log}"

umask 022
mkdir -p "$pending" "$done_dir" "$failed_dir" "\${log%/*}" || exit 1
# The log may hold secrets printed by scripts: private to root.
(umask 077 && : >> "$log") || exit 1
say() {
  printf '%s imgpatch-firstboot: %s\\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" "$*" | tee -a "$log"
}

status_file="$state/.status"
for script in "$pending"/*; do
  [ -f "$script" ] || continue
  name=\${script##*/}
  say "running $name"
  rm -f "$status_file"
  {
    if [ -x "$script" ]; then
      (cd / && "$script")
    else
      (cd / && sh "$script")
    fi
    echo $? > "$status_file"
  } 2>&1 | tee -a "$log"
  rc=$(cat "$status_file" 2>/dev/null || echo 1)
  rm -f "$status_file"
  if [ "$rc" = 0 ]; then
    mv -f "$script" "$done_dir/$name"
    say "$name finished"
  else
    mv -f "$script" "$failed_dir/$name"
    say "$name FAILED with exit status $rc (kept in $failed_dir)"
  fi
done

for f in "$failed_dir"/*; do
  if [ -e "$f" ]; then
    say "not complete: failed scripts in $failed_dir"
    rm -f "$stamp"
    exit 1
  fi
done
date '+%Y-%m-%dT%H:%M:%S%z' > "$stamp"
say "all first-boot scripts done"
exit 0
`;
}

export interface FirstbootUnitOptions {
  /** Units this one must finish before (e.g. services the scripts install). */
  before?: string[];
  /** Timestamp of the files written (SOURCE_DATE_EPOCH for reproducible images). */
  mtime?: Date;
}

/** The oneshot unit text. */
export function firstbootUnitText(options: FirstbootUnitOptions = {}): string {
  const before = [...new Set(options.before ?? [])];
  return `[Unit]
Description=imgpatch first-boot scripts
Documentation=file://${FIRSTBOOT.runner}
Wants=network-online.target
After=network-online.target cloud-init.service
${before.length > 0 ? `Before=${before.join(" ")}\n` : ""}
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${FIRSTBOOT.runner}
StandardOutput=journal+console
StandardError=inherit
TimeoutStartSec=0

[Install]
WantedBy=multi-user.target
`;
}

export interface FirstbootInstallResult {
  written: string[];
  links: string[];
}

/**
 * Installs (or refreshes) the runner, the unit and its enable link. Idempotent: queued scripts and
 * done/failed history are kept; a later run may widen `before`.
 */
export async function installFirstboot(
  fs: GuestFs,
  options: FirstbootUnitOptions = {},
): Promise<FirstbootInstallResult> {
  const written: string[] = [];
  await ensureDir(fs, "/usr/lib/imgpatch/firstboot");
  await fs.writeFile(FIRSTBOOT.runner, firstbootRunnerScript(), {
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtime: options.mtime,
  });
  written.push(FIRSTBOOT.runner);
  for (const d of [FIRSTBOOT.state, FIRSTBOOT.pending, FIRSTBOOT.done, FIRSTBOOT.failed])
    await ensureDir(fs, d, 0o700);
  await ensureDir(fs, "/var/log");
  // Keep Before= entries from an earlier run so adding scripts never drops an ordering.
  const before = new Set(options.before ?? []);
  const existing = await lstatOrNull(fs, FIRSTBOOT.unitPath);
  if (existing?.type === "file") {
    const old = new TextDecoder().decode(await fs.readFile(FIRSTBOOT.unitPath));
    for (const m of old.matchAll(/^Before=(.*)$/gm)) for (const u of m[1].split(/\s+/)) if (u) before.add(u);
  }
  await ensureDir(fs, "/etc/systemd/system");
  await fs.writeFile(FIRSTBOOT.unitPath, firstbootUnitText({ before: [...before] }), {
    mode: 0o644,
    uid: 0,
    gid: 0,
  });
  written.push(FIRSTBOOT.unitPath);
  // The unit lives in /etc/systemd/system, which every systemd build searches first.
  const r = await enableUnit(fs, FIRSTBOOT.unitName, { searchPath: UNIT_SEARCH_PATHS.merged });
  return { written, links: [...r.created, ...r.unchanged].map((l) => l.path) };
}

const SEQ_DIGITS = 6;

/** Next sequence number after every script ever queued (pending, done or failed). */
async function nextSequence(fs: GuestFs): Promise<number> {
  let max = 0;
  for (const d of [FIRSTBOOT.pending, FIRSTBOOT.done, FIRSTBOOT.failed]) {
    if (!(await lstatOrNull(fs, d))) continue;
    for (const n of await fs.readdir(d)) {
      const m = /^(\d+)-/.exec(n);
      if (m) max = Math.max(max, Number(m[1]));
    }
  }
  return max + 1;
}

/** A safe file-name part from a script's name. */
function slug(name: string): string {
  const s = name
    .replace(/[^A-Za-z0-9._-]+/g, "-")
    .replace(/^[-.]+/, "")
    .slice(0, 64);
  return s === "" ? "script" : s;
}

/**
 * Queues a script (installing the runner and unit if needed). Returns its guest path. Content without
 * a "#!" line is run with /bin/sh.
 */
export interface AddFirstbootOptions extends FirstbootUnitOptions {
  /**
   * If a script of the same name is still pending (queued by an earlier run, not yet booted),
   * replace its content instead of queueing a second copy (keeps re-runs idempotent).
   */
  replacePending?: boolean;
}

export async function addFirstbootScript(
  fs: GuestFs,
  name: string,
  content: string | Uint8Array,
  options: AddFirstbootOptions = {},
): Promise<string> {
  await installFirstboot(fs, options);
  if (options.replacePending) {
    for (const n of await fs.readdir(FIRSTBOOT.pending)) {
      if (n.replace(/^\d+-/, "") === slug(name)) {
        const path = `${FIRSTBOOT.pending}/${n}`;
        await fs.writeFile(path, content, { mode: 0o755, uid: 0, gid: 0, mtime: options.mtime });
        return path;
      }
    }
  }
  const seq = await nextSequence(fs);
  if (seq >= 10 ** SEQ_DIGITS) throw new Error("first-boot queue sequence exhausted");
  const path = `${FIRSTBOOT.pending}/${String(seq).padStart(SEQ_DIGITS, "0")}-${slug(name)}`;
  await fs.writeFile(path, content, { mode: 0o755, uid: 0, gid: 0, flag: "wx", mtime: options.mtime });
  return path;
}

/** `--firstboot-command CMD`: a one-line sh script. */
export function firstbootCommandScript(command: string): string {
  return `#!/bin/sh\n${command}\n`;
}
