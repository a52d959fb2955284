#!/bin/bash
# Builds the Debian guest images the boot suite edits, with the real tools, into $CACHE (default
# ~/.cache/imgpatch-e2e; outside the checkout so linters never walk the guest's root filesystem). Needs root (debootstrap; mke2fs -d keeps owners only when run as root).
#   rootfs/            debootstrap --variant=minbase bookworm (+ systemd-sysv, udev, e2fsprogs), cached
#   bare.qcow2         bare ext4 (the whole virtual disk is the filesystem)        -> root=/dev/vda
#   gpt.qcow2          GPT disk, ext4 in partition 1 at 1 MiB, compressed qcow2      -> root=/dev/vda1
#   data.qcow2         a small bare ext4 data disk with no OS (second disk, vdb)
#   xfs.qcow2          GPT disk: XFS /boot in partition 1, XFS / in partition 2, both made by
#                      mkfs.xfs -p (a protofile from the tree), fstab by UUID    -> root=/dev/vda2
# Images are rebuilt when this script or the rootfs changes (stamp file); the rootfs only when missing.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${IMGPATCH_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imgpatch-e2e}
SUITE=bookworm
. "$HERE/guest-tree.sh"
MIRROR=${IMGPATCH_E2E_MIRROR:-$(apt_mirror "$SUITE")}
INCLUDE=systemd-sysv,udev,e2fsprogs
ROOT_MB=1536
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
[ -n "$MIRROR" ] || { echo "build-guest.sh: no Debian $SUITE archive in apt's sources (set IMGPATCH_E2E_MIRROR)" >&2; exit 2; }
mkdir -p "$CACHE"
cd "$CACHE"
log() { printf '[build-guest %s] %s\n' "$(date +%T)" "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "build-guest.sh: must run as root (debootstrap, mke2fs -d owners)" >&2; exit 2; }

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v rpm >/dev/null || need+=(rpm)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
command -v python3 >/dev/null || need+=(python3)
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

# Kernel + initrd: the newest Debian kernel on the host. Its MODULES=most initrd carries virtio_blk,
# virtio_pci and ext4 (checked, so a failure to boot is never "initrd lacks the driver").
KVER=$(ls /boot/vmlinuz-* | sed 's|/boot/vmlinuz-||' | sort -V | tail -1)
initrd_list=$(lsinitramfs "/boot/initrd.img-$KVER")
for m in virtio_blk.ko virtio_pci.ko ext4.ko xfs.ko; do
  grep -q "/$m\$" <<<"$initrd_list" || { echo "initrd for $KVER lacks $m" >&2; exit 2; }
done
ln -sf "/boot/vmlinuz-$KVER" vmlinuz
ln -sf "/boot/initrd.img-$KVER" initrd.img

# 1. debootstrap (cached).
key="$SUITE $INCLUDE minbase"
if [ ! -f rootfs/.e2e-debootstrap ] || [ "$(cat rootfs/.e2e-debootstrap)" != "$key" ]; then
  log "debootstrap $SUITE from $MIRROR"
  t0=$(date +%s)
  rm -rf rootfs rootfs.tmp
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" rootfs.tmp "$MIRROR" > debootstrap.log 2>&1 \
    || { tail -20 debootstrap.log >&2; exit 1; }
  rm -rf rootfs.tmp/var/cache/apt/archives/*.deb rootfs.tmp/var/lib/apt/lists/*_Packages
  echo "$key" > rootfs.tmp/.e2e-debootstrap
  mv rootfs.tmp rootfs
  log "debootstrap took $(( $(date +%s) - t0 )) s"
fi

stamp="$(cat "$HERE/build-guest.sh" "$HERE/guest-tree.sh" | sha256sum | cut -c1-16) $(cat rootfs/.e2e-debootstrap) $KVER"
if [ -f images.stamp ] && [ "$(cat images.stamp)" = "$stamp" ] && [ -f gpt.qcow2 ] && [ -f bare.qcow2 ] && [ -f data.qcow2 ] && [ -f xfs.qcow2 ]; then
  log "images up to date"
  exit 0
fi
rm -f images.stamp

# 2. The guest tree: the debootstrap plus what any test VM needs (none of it is what we test).
prepare_tree rootfs tree

# 3. Images with the real tools.
log "mke2fs -d (bare ext4, ${ROOT_MB} MiB)"
rm -f bare.raw gpt.raw data.raw
mke2fs -q -t ext4 -L e2eroot -U 11111111-2222-3333-4444-555555555555 -E root_owner=0:0 -d tree bare.raw "${ROOT_MB}M"
log "sfdisk GPT + mke2fs -d at the partition offset"
truncate -s $(( ROOT_MB + 2 ))M gpt.raw
printf 'label: gpt\nfirst-lba: 2048\nstart=2048, size=%d, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"\n' \
  $(( ROOT_MB * 2048 )) | sfdisk -q gpt.raw
mke2fs -q -t ext4 -L e2eroot -E offset=1048576,root_owner=0:0 -d tree gpt.raw "${ROOT_MB}M"
log "data disk"
mkdir -p datatree/seed && echo "seed file" > datatree/seed/hello.txt
mke2fs -q -t ext4 -L e2edata -E root_owner=0:0 -d datatree data.raw 768M
log "XFS /boot and / by mkfs.xfs -p (GPT)"
# A protofile for a tree (mkfs.xfs -p): owners, modes, setuid/setgid, device nodes, symlinks; hard
# links become copies and sticky bits are not expressible (set afterwards with xfs_db for /tmp).
protofile() { # tree > protofile
  python3 - "$1" <<'PY'
import os, stat, sys
top = sys.argv[1]
def mode(st, c):
    m = st.st_mode
    return f"{c}{'u' if m & stat.S_ISUID else '-'}{'g' if m & stat.S_ISGID else '-'}{m & 0o777:03o}"
def walk(d, ind):
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        st = os.lstat(p)
        if any(ch.isspace() for ch in n):
            continue
        own = f"{st.st_uid} {st.st_gid}"
        if stat.S_ISLNK(st.st_mode): print(f"{ind}{n} {mode(st, 'l')} {own} {os.readlink(p)}")
        elif stat.S_ISDIR(st.st_mode):
            print(f"{ind}{n} {mode(st, 'd')} {own}"); walk(p, ind + " "); print(f"{ind}$")
        elif stat.S_ISREG(st.st_mode): print(f"{ind}{n} {mode(st, '-')} {own} {p}")
        elif stat.S_ISCHR(st.st_mode): print(f"{ind}{n} {mode(st, 'c')} {own} {os.major(st.st_rdev)} {os.minor(st.st_rdev)}")
        elif stat.S_ISBLK(st.st_mode): print(f"{ind}{n} {mode(st, 'b')} {own} {os.major(st.st_rdev)} {os.minor(st.st_rdev)}")
        elif stat.S_ISFIFO(st.st_mode): print(f"{ind}{n} {mode(st, 'p')} {own}")
print("/dev/null\n0 0\nd--755 0 0")
walk(top, " ")
print("$")
PY
}
XFS_BOOT_UUID=11111111-2222-3333-4444-5555555500b0
XFS_ROOT_UUID=11111111-2222-3333-4444-5555555500a0
rm -rf xfsboot && mv tree/boot xfsboot && mkdir tree/boot
printf 'UUID=%s /boot xfs defaults 0 0\n' "$XFS_BOOT_UUID" > tree/etc/fstab
echo "xfs boot volume" > xfsboot/README.e2e
protofile tree > xfsroot.proto
protofile xfsboot > xfsboot.proto
rm -f xfsroot.raw xfsboot.raw xfs.raw
truncate -s 320M xfsboot.raw
truncate -s "${ROOT_MB}M" xfsroot.raw
mkfs.xfs -q -f -L e2eboot -m uuid="$XFS_BOOT_UUID" -p xfsboot.proto xfsboot.raw
mkfs.xfs -q -f -L e2eroot -m uuid="$XFS_ROOT_UUID" -p xfsroot.proto xfsroot.raw
for d in /tmp /var/tmp; do
  m=$(xfs_db -r -c "path $d" -c "print core.mode" xfsroot.raw | sed 's/.*= //')
  xfs_db -x -c "path $d" -c "write core.mode $((m | 8#1000))" xfsroot.raw >/dev/null
done
truncate -s $(( ROOT_MB + 320 + 2 ))M xfs.raw
printf 'label: gpt\nfirst-lba: 2048\nstart=2048, size=%d, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="boot"\nstart=%d, size=%d, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="root"\n' \
  $(( 320 * 2048 )) $(( 2048 + 320 * 2048 )) $(( ROOT_MB * 2048 )) | sfdisk -q xfs.raw
dd if=xfsboot.raw of=xfs.raw bs=1M seek=1 conv=notrunc,sparse status=none
dd if=xfsroot.raw of=xfs.raw bs=1M seek=321 conv=notrunc,sparse status=none
rm -f xfsroot.raw xfsboot.raw xfsroot.proto xfsboot.proto
rm -rf xfsboot
log "qemu-img convert"
qemu-img convert -f raw -O qcow2 bare.raw bare.qcow2
qemu-img convert -c -f raw -O qcow2 gpt.raw gpt.qcow2
qemu-img convert -f raw -O qcow2 data.raw data.qcow2
qemu-img convert -f raw -O qcow2 xfs.raw xfs.qcow2
rm -f bare.raw gpt.raw data.raw xfs.raw
rm -rf tree datatree
echo "$stamp" > images.stamp
ls -la *.qcow2 >&2
