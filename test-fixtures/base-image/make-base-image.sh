#!/usr/bin/env bash
# make-base-image.sh [OUT.qcow2]: the embedded default guest of the main job, made with the real
# tools (mke2fs -d, debugfs, sfdisk, qemu-img), rootless and reproducible (SOURCE_DATE_EPOCH).
#
# A 130 MiB GPT disk like a small cloud image: p1 ext4 /boot (label "boot"), p2 ext4 / (label
# "root", GPT type "Linux root (x86-64)"), an /etc/fstab naming both by UUID, and a systemd
# layout: /usr/lib/systemd/system units, /etc/systemd/system with default.target and
# multi-user.target.wants, /bin /sbin /lib /lib64 -> usr/*, passwd/group/shadow, os-release
# (CentOS Stream 9 shape), /etc/selinux/config (enforcing, targeted). Binaries are stubs: the
# image is for editing and checking, not for booting.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/base.qcow2}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH E2FSCK_TIME=$SOURCE_DATE_EPOCH
export MKE2FS_CONFIG=/etc/mke2fs.conf
for t in mke2fs debugfs sfdisk qemu-img; do
  command -v $t >/dev/null || { echo "make-base-image: $t not installed" >&2; exit 3; }
done
ROOT_UUID=6d1f2a44-9b3e-4c55-8e21-0a5eb1a5e001
BOOT_UUID=6d1f2a44-9b3e-4c55-8e21-0a5eb1a5e002
SEED=3c9f6f1e-5a2b-4d7c-9e8f-0a1b2c3d4e5f
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
B=$WORK/boot
mkdir -p "$R" "$B"

"$HERE/base-tree.sh" "$R" "$B" "$ROOT_UUID"
cat > "$R/etc/fstab" <<X
# /etc/fstab (made by make-base-image.sh)
UUID=$ROOT_UUID /     ext4 defaults 0 1
UUID=$BOOT_UUID /boot ext4 defaults 1 2
tmpfs           /tmp  tmpfs defaults 0 0
X

# Reproducible host metadata: every mtime pinned.
find "$R" "$B" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# Owner/time fixes (mke2fs -d copies host owners and ctime/atime): all root, /home/centos centos.
fixcmds() { # tree
  (cd "$1" && find . -mindepth 1 | sed 's#^\.##') | while read -r p; do
    printf 'sif "%s" uid 0\nsif "%s" gid 0\nsif "%s" ctime @%s\nsif "%s" atime @%s\n' \
      "$p" "$p" "$p" "$SOURCE_DATE_EPOCH" "$p" "$SOURCE_DATE_EPOCH"
  done
  printf 'sif / ctime @%s\nsif / atime @%s\nsif /lost+found ctime @%s\nsif /lost+found atime @%s\n' \
    "$SOURCE_DATE_EPOCH" "$SOURCE_DATE_EPOCH" "$SOURCE_DATE_EPOCH" "$SOURCE_DATE_EPOCH"
}
mkfs() { # image size tree uuid label
  mke2fs -q -F -t ext4 -b 4096 -I 256 -N 2048 -U "$4" -L "$5" -E "hash_seed=$SEED,root_owner=0:0" -d "$3" "$1" "$2"
  { fixcmds "$3"; [ "$5" = root ] && printf 'sif /home/centos uid 1000\nsif /home/centos gid 1000\nsif /home/centos/.ssh uid 1000\nsif /home/centos/.ssh gid 1000\n'; } \
    > "$WORK/$5.cmds"
  debugfs -w -f "$WORK/$5.cmds" "$1" >/dev/null 2>&1
  e2fsck -fn "$1" >/dev/null 2>&1 || { echo "make-base-image: e2fsck -fn found problems on $5" >&2; exit 4; }
}
mkfs "$WORK/boot.img" 32M "$B" "$BOOT_UUID" boot
mkfs "$WORK/root.img" 96M "$R" "$ROOT_UUID" root

# --- the disk ---
DISK=$WORK/disk.raw
truncate -s 130M "$DISK"
sfdisk -q "$DISK" <<'X'
label: gpt
label-id: 6D1F2A44-9B3E-4C55-8E21-0A5EB1A5D15C
first-lba: 2048
start=2048, size=65536, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=6D1F2A44-9B3E-4C55-8E21-0A5EB1A5B001, name="boot"
start=67584, size=196608, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=6D1F2A44-9B3E-4C55-8E21-0A5EB1A5B002, name="root"
X
dd if="$WORK/boot.img" of="$DISK" bs=512 seek=2048 conv=notrunc,sparse status=none
dd if="$WORK/root.img" of="$DISK" bs=512 seek=67584 conv=notrunc,sparse status=none
qemu-img convert -q -f raw -O qcow2 -o compat=1.1,cluster_size=65536 "$DISK" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "make-base-image: wrote $OUT"
