#!/bin/bash
# Builds the SELinux guest of the boot suite's `selinux` scenario into $CACHE (see build-guest.sh,
# which must have run first: it links the kernel and initrd). Needs root.
#   rootfs-selinux/   debootstrap --variant=minbase bookworm + selinux-policy-default (refpolicy), cached
#   selinux.qcow2     bare ext4, SELINUX=enforcing, every file labelled by the policy's own setfiles
#                     through a loop mount                      -> root=/dev/vda security=selinux
# Rebuilt when this script, guest-tree.sh, the rootfs or the kernel changes (selinux.stamp).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${IMGPATCH_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imgpatch-e2e}
SUITE=bookworm
. "$HERE/guest-tree.sh"
MIRROR=${IMGPATCH_E2E_MIRROR:-$(apt_mirror "$SUITE")}
INCLUDE=systemd-sysv,udev,e2fsprogs,selinux-policy-default
ROOT_MB=1536
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
log() { printf '[build-guest-selinux %s] %s\n' "$(date +%T)" "$*" >&2; }
[ "$(id -u)" = 0 ] || { echo "build-guest-selinux.sh: must run as root (debootstrap, loop mount)" >&2; exit 2; }
[ -n "$MIRROR" ] || { echo "build-guest-selinux.sh: no Debian $SUITE archive in apt's sources (set IMGPATCH_E2E_MIRROR)" >&2; exit 2; }
command -v setfiles >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends policycoreutils >&2
cd "$CACHE"
[ -e vmlinuz ] || { echo "build-guest-selinux.sh: run build-guest.sh first (kernel link)" >&2; exit 2; }

key="$SUITE $INCLUDE minbase"
if [ ! -f rootfs-selinux/.e2e-debootstrap ] || [ "$(cat rootfs-selinux/.e2e-debootstrap)" != "$key" ]; then
  log "debootstrap $SUITE with selinux-policy-default from $MIRROR"
  t0=$(date +%s)
  rm -rf rootfs-selinux rootfs-selinux.tmp
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" rootfs-selinux.tmp "$MIRROR" > debootstrap-selinux.log 2>&1 \
    || { tail -20 debootstrap-selinux.log >&2; exit 1; }
  rm -rf rootfs-selinux.tmp/var/cache/apt/archives/*.deb rootfs-selinux.tmp/var/lib/apt/lists/*_Packages
  echo "$key" > rootfs-selinux.tmp/.e2e-debootstrap
  mv rootfs-selinux.tmp rootfs-selinux
  log "debootstrap took $(( $(date +%s) - t0 )) s"
fi

KVER=$(readlink vmlinuz | sed 's|.*/vmlinuz-||')
stamp="$(cat "$HERE/build-guest-selinux.sh" "$HERE/guest-tree.sh" | sha256sum | cut -c1-16) $key $KVER"
if [ -f selinux.stamp ] && [ "$(cat selinux.stamp)" = "$stamp" ] && [ -f selinux.qcow2 ]; then
  log "selinux image up to date"
  exit 0
fi
rm -f selinux.stamp

prepare_tree rootfs-selinux tree-selinux
# Enforcing from the first boot: no /.autorelabel, the labels below are the whole story.
printf 'SELINUX=enforcing\nSELINUXTYPE=default\n' > tree-selinux/etc/selinux/config
rm -f tree-selinux/.autorelabel
log "mke2fs -d (bare ext4, ${ROOT_MB} MiB), then setfiles -F through a loop mount"
rm -f selinux.raw
mke2fs -q -t ext4 -L e2eselinux -E root_owner=0:0 -d tree-selinux selinux.raw "${ROOT_MB}M"
mnt=$(mktemp -d)
mount -o loop selinux.raw "$mnt"
rc=0
setfiles -F -r "$mnt" "$mnt/etc/selinux/default/contexts/files/file_contexts" "$mnt" || rc=$?
umount "$mnt"
rmdir "$mnt"
[ "$rc" = 0 ] || { echo "setfiles failed ($rc)" >&2; exit 1; }
e2fsck -fn selinux.raw >/dev/null
qemu-img convert -f raw -O qcow2 selinux.raw selinux.qcow2
rm -rf selinux.raw tree-selinux
echo "$stamp" > selinux.stamp
ls -la selinux.qcow2 >&2
