#!/usr/bin/env bash
# make-xfs-base-image.sh [OUT.qcow2]: the RHEL-family base of the main job (what `npm start` edits by
# default), made rootless with the real tools: base-tree.sh's trees, mkfs.xfs -p (a protofile gives
# owners and modes without root), mkfs.vfat, sfdisk, rpm --initdb, qemu-img.
#
# A 290 MiB GPT disk shaped like a CentOS Stream 9 cloud image:
#   p1 BIOS boot (ef02, 1 MiB, empty), p2 EFI system (vfat "EFI", 32 MiB) on /boot/efi,
#   p3 XFS /boot (label "boot", 64 MiB), p4 XFS / (label "root", 190 MiB, "Linux root (x86-64)").
# /etc/fstab names the three filesystems by UUID; / has /etc/selinux/config (enforcing, targeted),
# an empty sqlite rpmdb in /var/lib/rpm and CentOS Stream 9 os-release.
# XFS_MKFS_ARGS adds mkfs.xfs options to both XFS volumes (e.g. "-m crc=0" for v4, as tests do).
# LAYOUT=centos7 makes a CentOS 7 GenericCloud-shaped disk instead: MBR, one XFS / partition
# (with /boot a directory of it), CentOS Linux 7 os-release, a one-line fstab.
# Not byte-reproducible: mkfs.xfs 6.1 stamps the clock into inode times (UUIDs are fixed).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/base-xfs.qcow2}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
for t in mkfs.xfs mkfs.vfat sfdisk qemu-img rpm xfs_repair; do
  command -v $t >/dev/null || { echo "make-xfs-base-image: $t not installed" >&2; exit 3; }
done
ROOT_UUID=6d1f2a44-9b3e-4c55-8e21-0a5eb1a5f001
BOOT_UUID=6d1f2a44-9b3e-4c55-8e21-0a5eb1a5f002
EFI_ID=6D1F2A44 # vfat volume id, shown as 6D1F-2A44
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
B=$WORK/boot
E=$WORK/efi
mkdir -p "$R" "$B" "$E"

"$HERE/base-tree.sh" "$R" "$B" "$ROOT_UUID"
if [ "${LAYOUT:-}" = centos7 ]; then
  rmdir "$R/boot" && mv "$B" "$R/boot" && mkdir "$B"
  rm "$R/etc/redhat-release" "$R/etc/system-release" "$R/etc/centos-release"
  echo "CentOS Linux release 7.9.2009 (Core)" > "$R/etc/centos-release"
  ln -s centos-release "$R/etc/redhat-release"
  ln -s centos-release "$R/etc/system-release"
  cat > "$R/usr/lib/os-release" <<'X'
NAME="CentOS Linux"
VERSION="7 (Core)"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="7"
PRETTY_NAME="CentOS Linux 7 (Core)"
CPE_NAME="cpe:/o:centos:centos:7"
HOME_URL="https://www.centos.org/"
X
  printf '# /etc/fstab (make-xfs-base-image.sh LAYOUT=centos7)\nUUID=%s / xfs defaults 0 0\n' "$ROOT_UUID" \
    > "$R/etc/fstab"
  mkdir -p "$R/var/lib/rpm"
  protofile_only=1
fi
mkdir -p "$B/efi" "$E/EFI/centos" "$E/EFI/BOOT"
printf 'search --no-floppy --fs-uuid --set=dev %s\nset prefix=($dev)/grub2\nconfigfile $prefix/grub.cfg\n' \
  "$BOOT_UUID" > "$E/EFI/centos/grub.cfg"
printf 'stub shim\n' > "$E/EFI/BOOT/BOOTX64.EFI"
[ -n "${protofile_only:-}" ] || cat > "$R/etc/fstab" <<X
# /etc/fstab (made by make-xfs-base-image.sh)
UUID=$ROOT_UUID /         xfs  defaults 0 0
UUID=$BOOT_UUID /boot     xfs  defaults 0 0
UUID=6D1F-2A44  /boot/efi vfat umask=0077,shortname=winnt 0 2
X
mkdir -p "$R/var/lib/rpm"
rpm --define '_db_backend sqlite' --dbpath "$R/var/lib/rpm" --initdb
rm -f "$R/var/lib/rpm/.rpm.lock" "$R/var/lib/rpm/rpmdb.sqlite-shm" "$R/var/lib/rpm/rpmdb.sqlite-wal"

# A protofile for TREE (mkfs.xfs -p): modes from the tree, every owner root except /home/centos.
# Names are emitted in C order; sticky bits (not expressible in a protofile) are set afterwards.
proto_dir() { # dir relpath indent
  local name p rel mode t uid
  while IFS= read -r name; do
    p="$1/$name"
    rel="$2/$name"
    mode=$(stat -c %a "$p")
    mode=$(printf '%03o' $((8#$mode & 8#777)))
    uid=0
    case "$rel" in /home/centos | /home/centos/*) uid=1000 ;; esac
    if [ -L "$p" ]; then
      printf '%s%s l--%s %s %s %s\n' "$3" "$name" "$mode" "$uid" "$uid" "$(readlink "$p")"
    elif [ -d "$p" ]; then
      printf '%s%s d--%s %s %s\n' "$3" "$name" "$mode" "$uid" "$uid"
      proto_dir "$p" "$rel" "$3 "
      printf '%s$\n' "$3"
    else
      printf '%s%s ---%s %s %s %s\n' "$3" "$name" "$mode" "$uid" "$uid" "$p"
    fi
  done < <(cd "$1" && LC_ALL=C ls -A | LC_ALL=C sort)
}
protofile() { # tree > protofile
  printf '/dev/null\n0 0\nd--755 0 0\n'
  proto_dir "$1" "" " "
  printf '$\n'
}
mkxfs() { # image size tree uuid label
  protofile "$3" > "$WORK/$5.proto"
  # The protofile holds each file's guest mode; mkfs.xfs only needs to read the files, which an
  # unprivileged user cannot do for 0000 ones like /etc/shadow (root can): make them readable here.
  find "$3" -type f ! -perm -u+r -exec chmod u+r {} +
  truncate -s "$2" "$1"
  # The fstests switches let mkfs.xfs make volumes under its 300 MB floor.
  TEST_DIR=$WORK TEST_DEV=$1 QA_CHECK_FS=xfs \
    mkfs.xfs -q -f ${XFS_MKFS_ARGS:-} -m uuid="$4" -L "$5" -p "$WORK/$5.proto" "$1"
}
if [ -n "${protofile_only:-}" ]; then
  mkxfs "$WORK/root.img" 300M "$R" "$ROOT_UUID" root
  DISK=$WORK/disk.raw
  truncate -s 301M "$DISK"
  printf 'label: dos\nlabel-id: 0x000aec2a\nstart=2048, type=83, bootable\n' | sfdisk -q "$DISK"
  dd if="$WORK/root.img" of="$DISK" bs=512 seek=2048 conv=notrunc,sparse status=none
  xfs_repair -n -f "$WORK/root.img" >/dev/null 2>&1 || { echo "make-xfs-base-image: xfs_repair -n found problems" >&2; exit 4; }
  qemu-img convert -q -f raw -O qcow2 -o compat=1.1,cluster_size=65536 "$DISK" "$OUT.tmp"
  mv "$OUT.tmp" "$OUT"
  echo "make-xfs-base-image: wrote $OUT (centos7 layout)"
  exit 0
fi
mkxfs "$WORK/boot.img" 64M "$B" "$BOOT_UUID" boot
mkxfs "$WORK/root.img" 190M "$R" "$ROOT_UUID" root
# /tmp and /var/tmp: 1777 (the protofile made them 0777).
for d in /tmp /var/tmp; do
  mode=$(xfs_db -r -c "path $d" -c "print core.mode" "$WORK/root.img" | sed 's/.*= //')
  xfs_db -x -c "path $d" -c "write core.mode $((mode | 8#1000))" "$WORK/root.img" >/dev/null
done
for v in boot root; do
  xfs_repair -n -f "$WORK/$v.img" >/dev/null 2>&1 || {
    echo "make-xfs-base-image: xfs_repair -n found problems on $v" >&2
    exit 4
  }
done
truncate -s 32M "$WORK/efi.img"
mkfs.vfat -F 16 -n EFI -i "$EFI_ID" "$WORK/efi.img" >/dev/null
mcopy_ok=0
if command -v mcopy >/dev/null; then
  MTOOLS_SKIP_CHECK=1 mcopy -s -i "$WORK/efi.img" "$E/EFI" ::/ && mcopy_ok=1
fi
[ $mcopy_ok = 1 ] || echo "make-xfs-base-image: mtools not installed; the ESP stays empty" >&2

# --- the disk ---
DISK=$WORK/disk.raw
truncate -s 290M "$DISK"
sfdisk -q "$DISK" <<'X'
label: gpt
label-id: 6D1F2A44-9B3E-4C55-8E21-0A5EB1A5D15D
first-lba: 2048
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, uuid=6D1F2A44-9B3E-4C55-8E21-0A5EB1A5C001, name="bios"
start=4096, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=6D1F2A44-9B3E-4C55-8E21-0A5EB1A5C002, name="EFI"
start=69632, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=6D1F2A44-9B3E-4C55-8E21-0A5EB1A5C003, name="boot"
start=200704, size=389120, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=6D1F2A44-9B3E-4C55-8E21-0A5EB1A5C004, name="root"
X
dd if="$WORK/efi.img" of="$DISK" bs=512 seek=4096 conv=notrunc,sparse status=none
dd if="$WORK/boot.img" of="$DISK" bs=512 seek=69632 conv=notrunc,sparse status=none
dd if="$WORK/root.img" of="$DISK" bs=512 seek=200704 conv=notrunc,sparse status=none
qemu-img convert -q -f raw -O qcow2 -o compat=1.1,cluster_size=65536 "$DISK" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "make-xfs-base-image: wrote $OUT"
