# Sourced by the guest builders. prepare_tree ROOTFS TREE: a copy of a debootstrap plus what any
# test VM needs (none of it is what the suite tests).
prepare_tree() {
  local t=$2
  log "preparing guest tree $t from $1"
  rm -rf "$t" && cp -a "$1" "$t" && rm -f "$t/.e2e-debootstrap"
  echo e2e-guest > "$t"/etc/hostname
  # A fixed machine-id: no ConditionFirstBoot units (systemd-firstboot would prompt on the console).
  echo 0123456789abcdef0123456789abcdef > "$t"/etc/machine-id
  printf '# root is mounted rw from the kernel command line\n' > "$t"/etc/fstab
  # No login prompts on the serial console: the run is driven by units, not by a shell.
  ln -sf /dev/null "$t"/etc/systemd/system/serial-getty@.service
  ln -sf /dev/null "$t"/etc/systemd/system/getty@.service
  # The guard (part of the base, not of what is tested): says the guest reached multi-user.target, and
  # powers it off if nothing else does within the guard time (kernel command line e2e.guard=SECONDS).
  cat > "$t"/usr/local/sbin/e2e-guard <<'GUARD'
#!/bin/sh
echo "@@E2E booted" > /dev/ttyS0
g=$(sed -n 's/.*e2e\.guard=\([0-9]*\).*/\1/p' /proc/cmdline); g=${g:-120}
sleep "$g"
echo "@@E2E guard-timeout after ${g}s: powering off" > /dev/ttyS0
systemctl poweroff --no-block
GUARD
  chmod 0755 "$t"/usr/local/sbin/e2e-guard
  cat > "$t"/etc/systemd/system/e2e-guard.service <<'UNIT'
[Unit]
Description=e2e boot guard (reports boot, powers off after a bound)
[Service]
Type=simple
ExecStart=/usr/local/sbin/e2e-guard
[Install]
WantedBy=multi-user.target
UNIT
  ln -sf /etc/systemd/system/e2e-guard.service "$t"/etc/systemd/system/multi-user.target.wants/e2e-guard.service
  # Units that only slow a TCG boot down and do nothing in this VM.
  for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
    ln -sf /dev/null "$t/etc/systemd/system/$u"
  done
}

# apt_mirror SUITE: the Debian archive URI this machine's apt is configured with for SUITE (read at
# run time, never written into the repository).
apt_mirror() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' 2>/dev/null |
    awk -v s="$1" '$2 == s { sub("/$", "", $1); print $1; exit }'
}
