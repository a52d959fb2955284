#!/usr/bin/env bash
# Regenerates every committed fixture under test-fixtures/out/ with the real tools:
# mke2fs -d (e2fsprogs), debugfs, qemu-img/qemu-io, sfdisk, mkfs.vfat, mkswap; then the RPM
# fixtures via rpm/generate.sh. Needs root (the source trees carry other owners, device nodes and
# security.* xattrs). Output is deterministic for a given tool version: fixed UUIDs, hash seeds,
# time stamps (E2FSPROGS_FAKE_TIME, SOURCE_DATE_EPOCH), and gzip -n.
#
#   bash test-fixtures/generate.sh        (or: npm run fixtures)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

if [ "$(id -u)" != 0 ]; then
  echo "generate.sh: needs root (chown to other uids, mknod, security.selinux xattrs)" >&2
  exit 1
fi
for t in mke2fs debugfs e2fsck dumpe2fs qemu-img qemu-io sfdisk mkfs.vfat mkswap setfattr getfattr gzip node; do
  command -v "$t" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
  command -v "$t" >/dev/null || { echo "generate.sh: missing tool $t" >&2; exit 1; }
done

export LC_ALL=C TZ=UTC
export SOURCE_DATE_EPOCH=1700000000    # 2023-11-14T22:13:20Z
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH E2FSCK_TIME=$SOURCE_DATE_EPOCH
export MKE2FS_CONFIG=/etc/mke2fs.conf  # the distribution defaults (Debian 12: e2fsprogs 1.47.0)

FINAL=$here/out
WORK=$here/.work/gen
OUT=$WORK/out # staged, replaces $FINAL only when everything succeeded
rm -rf "$WORK"
mkdir -p "$WORK/img" "$OUT/manifests"
IMG=$WORK/img

# ---------------------------------------------------------------------------------------------
# Source trees and their manifests (from the host's view of the tree, never from our readers).
for tree in full small; do
  bash scripts/make-tree.sh "$WORK/tree-$tree" "$tree"
  node scripts/manifest.mjs "$WORK/tree-$tree" "$tree" | gzip -9n > "$OUT/manifests/tree-$tree.json.gz"
done

# Run a tool, showing its output only when it fails.
quiet() {
  local log=$WORK/quiet.log
  "$@" > "$log" 2>&1 || { cat "$log" >&2; echo "generate.sh: failed: $*" >&2; exit 1; }
}

# mke2fs -d takes ctime/atime from the host (not reproducible) and drops mtime nanoseconds and
# post-2038 epoch bits: fix every inode's times with debugfs (see scripts/pin-times.mjs).
# mke2fs -d writes every directory as a linear list; e2fsck -D rebuilds the multi-block ones as
# htree indexes (dir_index), as a long-lived filesystem would have them. Exit 1 = "fixed", expected.
index_dirs() { # <image>
  local rc=0
  e2fsck -fyD "$1" > "$WORK/fsck.log" 2>&1 || rc=$?
  if [ "$rc" -gt 1 ]; then cat "$WORK/fsck.log" >&2; echo "generate.sh: e2fsck -fyD $1 failed ($rc)" >&2; exit 1; fi
}

pin_times() { # <image> <tree> <inode-size>
  local img=$1 tree=$2 isize=$3 cmds=$WORK/times.cmds
  node scripts/pin-times.mjs "$OUT/manifests/tree-$tree.json.gz" "$isize" "$SOURCE_DATE_EPOCH" > "$cmds"
  debugfs -w -f "$cmds" "$img" > /dev/null 2> "$WORK/times.err" || { cat "$WORK/times.err" >&2; exit 1; }
  if grep -v '^debugfs [0-9]' "$WORK/times.err" | grep -q .; then cat "$WORK/times.err" >&2; exit 1; fi
}

# mkext <name> <tree> <size> <inode-size> <mke2fs args...>
mkext() {
  local name=$1 tree=$2 size=$3 isize=$4
  shift 4
  rm -f "$IMG/$name"
  quiet mke2fs -q -F -I "$isize" "$@" -d "$WORK/tree-$tree" "$IMG/$name" "$size"
  index_dirs "$IMG/$name"
  pin_times "$IMG/$name" "$tree" "$isize"
  quiet e2fsck -fn "$IMG/$name"
}

uuid() { printf '1a9e0000-0000-4000-8000-%012d' "$1"; } # fixed, distinct, valid v4-shaped UUIDs
seed=5eed0000-0000-4000-8000-00000000abcd

# ---------------------------------------------------------------------------------------------
# ext filesystems (bare images)
mkext ext4-default.img full 32M 256 -t ext4 -b 4096 -N 8192 -O orphan_file -U "$(uuid 1)" -E hash_seed=$seed -L ext4-default
mkext ext4-1k.img full 24M 256 -t ext4 -b 1024 -N 8192 -U "$(uuid 2)" -E hash_seed=$seed -L ext4-1k
mkext ext4-nocsum.img small 12M 256 -t ext4 -b 4096 -O ^metadata_csum,^64bit,uninit_bg -U "$(uuid 3)" -E hash_seed=$seed -L ext4-nocsum
mkext ext4-inline.img small 12M 256 -t ext4 -b 4096 -O inline_data -U "$(uuid 4)" -E hash_seed=$seed -L ext4-inline
mkext ext3.img small 12M 256 -t ext3 -b 1024 -U "$(uuid 5)" -E hash_seed=$seed -L ext3
mkext ext2.img small 12M 128 -t ext2 -b 4096 -U "$(uuid 6)" -E hash_seed=$seed -L ext2

# ---------------------------------------------------------------------------------------------
# qcow2 and raw: a 4 MiB raw disk with a per-sector pattern and two holes, in many encodings.
node scripts/pattern.mjs sectors $((4 << 20)) imgpatch > "$IMG/pattern.raw"
dd if=/dev/zero of="$IMG/pattern.raw" bs=1M seek=1 count=1 conv=notrunc status=none
dd if=/dev/zero of="$IMG/pattern.raw" bs=512K seek=5 count=2 conv=notrunc status=none

conv() { # <src> <src-fmt> <dst> <qemu-img convert args...>
  local src=$1 fmt=$2 dst=$3
  shift 3
  qemu-img convert -f "$fmt" -O qcow2 "$@" "$src" "$IMG/$dst"
}
conv "$IMG/pattern.raw" raw pattern-v3.qcow2 -o compat=1.1,cluster_size=65536
conv "$IMG/pattern.raw" raw pattern-v2.qcow2 -o compat=0.10,cluster_size=65536
conv "$IMG/pattern.raw" raw pattern-512.qcow2 -o compat=1.1,cluster_size=512
conv "$IMG/pattern.raw" raw pattern-2m.qcow2 -o compat=1.1,cluster_size=2M
conv "$IMG/pattern.raw" raw pattern-compressed.qcow2 -c -o compat=1.1,cluster_size=65536
conv "$IMG/pattern.raw" raw pattern-refcount1.qcow2 -o compat=1.1,cluster_size=65536,refcount_bits=1

# zero clusters: whole-cluster zero flag (allocation kept), zero flag with unmap, and a
# partial-cluster zero write (plain zeros in a data cluster)
cp "$IMG/pattern-v3.qcow2" "$IMG/pattern-zero.qcow2"
qemu-io -f qcow2 -c "write -z 64k 128k" -c "write -z -u 2M 128k" -c "write -z 3600k 3k" "$IMG/pattern-zero.qcow2" > /dev/null

# extended L2 entries (32 subclusters of 2 KiB per 64 KiB cluster), with subcluster-sized writes
conv "$IMG/pattern.raw" raw pattern-extl2.qcow2 -o compat=1.1,cluster_size=65536,extended_l2=on
qemu-io -f qcow2 -c "write -P 0xe1 1090k 2k" -c "write -z 8k 4k" -c "write -P 0xe2 2600k 6k" \
  "$IMG/pattern-extl2.qcow2" > /dev/null

# an overlay whose backing file is named by a RELATIVE path (resolved against the overlay's dir)
(cd "$IMG" && qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=65536 -b pattern-v3.qcow2 -F qcow2 overlay.qcow2)
qemu-io -f qcow2 -c "write -P 0xcc 512k 64k" -c "write -P 0xdd 1500k 4k" -c "write -z 3584k 64k" \
  -c "write -P 0xee 4190208 4096" "$IMG/overlay.qcow2" > /dev/null

# an internal snapshot, then writes after it (copy-on-write of shared clusters)
cp "$IMG/pattern-v3.qcow2" "$IMG/pattern-snapshot.qcow2"
qemu-img snapshot -c snap1 "$IMG/pattern-snapshot.qcow2"
qemu-io -f qcow2 -c "write -P 0x5e 0 64k" -c "write -P 0x5f 1M 4k" "$IMG/pattern-snapshot.qcow2" > /dev/null
node scripts/qcow2-patch.mjs snapshot-times "$IMG/pattern-snapshot.qcow2" "$SOURCE_DATE_EPOCH"

# hand-broken copies with known qemu-img check verdicts: one leaked cluster; one corruption
cp "$IMG/pattern-v3.qcow2" "$IMG/broken-leak.qcow2"
node scripts/qcow2-patch.mjs drop-l2 "$IMG/broken-leak.qcow2" 65536
cp "$IMG/pattern-v3.qcow2" "$IMG/broken-refcount.qcow2"
node scripts/qcow2-patch.mjs zero-refcount "$IMG/broken-refcount.qcow2" 131072

# an ext4 filesystem inside qcow2
qemu-img convert -f raw -O qcow2 -o compat=1.1,cluster_size=65536 "$IMG/ext4-default.img" "$IMG/ext4-default.qcow2"
qemu-img convert -f raw -O qcow2 -c -o compat=0.10,cluster_size=65536 "$IMG/ext4-inline.img" "$IMG/ext4-inline-v2-compressed.qcow2"

# ext4 edited in an overlay: ext4-default with a file added to /lost+found (outside the
# manifest's tree) and an atime changed, stored as an overlay of ext4-default.qcow2 holding only
# the 4 KiB blocks that differ (written with qemu-io), backing named by a relative path.
mod=$WORK/ext4-mod.img
cp "$IMG/ext4-default.img" "$mod"
printf 'written into the overlay by debugfs
' > "$WORK/overlay-note.txt"
cat > "$WORK/mod.cmds" <<EOC
write $WORK/overlay-note.txt /lost+found/overlay-note.txt
sif /lost+found/overlay-note.txt uid 1000
sif /lost+found/overlay-note.txt gid 1000
sif /small.txt atime @$((SOURCE_DATE_EPOCH + 86400))
EOC
for f in /lost+found/overlay-note.txt /lost+found; do
  for t in atime ctime mtime crtime; do echo "sif $f $t @$SOURCE_DATE_EPOCH"; echo "sif $f ${t}_extra 0"; done >> "$WORK/mod.cmds"
done
debugfs -w -f "$WORK/mod.cmds" "$mod" > /dev/null 2> "$WORK/mod.err"
if grep -v '^debugfs [0-9]' "$WORK/mod.err" | grep -q .; then cat "$WORK/mod.err" >&2; exit 1; fi
quiet e2fsck -fn "$mod"
(cd "$IMG" && qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=65536 -b ext4-default.qcow2 -F qcow2 ext4-overlay.qcow2)
mkdir -p "$WORK/chunks"
node scripts/diff-writes.mjs "$IMG/ext4-default.img" "$mod" "$WORK/chunks" 4096 > "$WORK/overlay.cmds"
mapfile -t ocmds < "$WORK/overlay.cmds"
qargs=()
for c in "${ocmds[@]}"; do qargs+=(-c "$c"); done
qemu-io -f qcow2 "${qargs[@]}" "$IMG/ext4-overlay.qcow2" > /dev/null
qemu-img convert -f qcow2 -O raw "$IMG/ext4-overlay.qcow2" "$WORK/overlay-flat.img"
cmp "$WORK/overlay-flat.img" "$mod" || { echo "generate.sh: ext4-overlay.qcow2 does not match" >&2; exit 1; }
rm -rf "$mod" "$WORK/chunks" "$WORK/overlay-flat.img"

# ---------------------------------------------------------------------------------------------
# Whole disks, partitioned with sfdisk on plain files; filesystems written in with dd.

# put_fs <disk> <partition-number> <kind> [args]: make a filesystem the partition's size, copy it in
put_fs() {
  local disk=$1 num=$2
  shift 2
  local geo
  geo=$(sfdisk --json "$disk" | node -e 'const j=JSON.parse(require("fs").readFileSync(0)).partitiontable;const p=j.partitions.find(p=>new RegExp(`\\D${process.argv[1]}$`).test(p.node));const s=j.sectorsize??512;console.log(p.start*s, p.size*s)' "$num")
  put_fs_at "$disk" ${geo% *} ${geo#* } "$@"
}

# put_fs_at <disk> <offset-bytes> <size-bytes> <kind> [args]
put_fs_at() {
  local disk=$1 offset=$2 size=$3 kind=$4
  shift 4
  local part=$WORK/part.img
  rm -f "$part"
  truncate -s "$size" "$part"
  case $kind in
    ext)
      local tree=$1 isize=$2
      shift 2
      quiet mke2fs -q -F -I "$isize" "$@" -d "$WORK/tree-$tree" "$part"
      index_dirs "$part"
      pin_times "$part" "$tree" "$isize"
      quiet e2fsck -fn "$part"
      ;;
    vfat)
      local id=$1 label=$2
      shift 2
      quiet mkfs.vfat --invariant -i "$id" -n "$label" "$@" "$part"
      ;;
    swap)
      quiet mkswap -U "$1" -L swap "$part"
      ;;
  esac
  dd if="$part" of="$disk" bs=512 seek=$((offset / 512)) conv=notrunc,sparse status=none
  rm -f "$part"
}

# GPT like a cloud image: BIOS boot, EFI system (vfat), Linux root x86-64 (ext4).
gpt=$IMG/disk-gpt.img
rm -f "$gpt"
truncate -s 40M "$gpt"
sfdisk -q --no-reread --no-tell-kernel "$gpt" <<EOS
label: gpt
label-id: 0E1A0000-0000-4000-8000-000000000001
unit: sectors
first-lba: 34
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, uuid=0E1A0000-0000-4000-8000-0000000000B1, name="BIOS boot"
start=4096, size=32768, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=0E1A0000-0000-4000-8000-0000000000E5, name="EFI System"
start=36864, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=0E1A0000-0000-4000-8000-00000000000F, name="root"
EOS
put_fs "$gpt" 2 vfat 0e1a00e5 ESP
put_fs "$gpt" 3 ext small 256 -t ext4 -b 4096 -U "$(uuid 11)" -E hash_seed=$seed -L root
sfdisk --json "$gpt" | sed "s|$IMG/||g" > "$OUT/disk-gpt.sfdisk.json"
qemu-img convert -f raw -O qcow2 -o compat=1.1,cluster_size=65536 "$gpt" "$IMG/disk-gpt.qcow2"

# MBR: primary ext4 (bootable), an extended partition holding two logicals (ext2, swap), and
# a primary FAT32-LBA partition after it.
mbr=$IMG/disk-mbr.img
rm -f "$mbr"
truncate -s 40M "$mbr"
sfdisk -q --no-reread --no-tell-kernel "$mbr" <<EOS
label: dos
label-id: 0x1ee7c0de
unit: sectors
start=2048, size=24576, type=83, bootable
start=26624, size=40960, type=5
start=67584, size=8192, type=c
start=28672, size=16384, type=83
start=47104, size=16384, type=82
EOS
put_fs "$mbr" 1 ext small 256 -t ext4 -U "$(uuid 21)" -E hash_seed=$seed -L mbr-root
put_fs "$mbr" 5 ext small 128 -t ext2 -b 1024 -U "$(uuid 25)" -E hash_seed=$seed -L mbr-logical
put_fs "$mbr" 6 swap 1a9e0000-0000-4000-8000-000000000026
put_fs "$mbr" 3 vfat 1ee7000c DATA
sfdisk --json "$mbr" | sed "s|$IMG/||g" > "$OUT/disk-mbr.sfdisk.json"

# GPT on 4 KiB logical sectors (sfdisk cannot, fdisk -b 4096 can, on a plain file): ESP (vfat
# with 4 KiB sectors) and a Linux filesystem partition (ext4). The partition table is saved as
# fdisk's sfdisk-format dump (sfdisk --json would read the file with 512-byte sectors).
g4k=$IMG/disk-gpt-4k.img
rm -f "$g4k"
truncate -s 24M "$g4k"
cat > "$WORK/g4k.script" <<EOS
label: gpt
label-id: 0E1A0000-0000-4000-8000-000000004096
unit: sectors
first-lba: 6
start=256, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=0E1A0000-0000-4000-8000-0000000040E5, name="EFI System"
start=2304, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=0E1A0000-0000-4000-8000-00000000400F, name="data"
EOS
printf 'I\n%s\nw\n' "$WORK/g4k.script" | quiet fdisk -b 4096 "$g4k"
rm -f "$WORK/g4k.dump"
printf 'O\n%s\nq\n' "$WORK/g4k.dump" | quiet fdisk -b 4096 "$g4k"
sed "s|$IMG/||g" "$WORK/g4k.dump" > "$OUT/disk-gpt-4k.sfdisk"
put_fs_at "$g4k" $((256 * 4096)) $((2048 * 4096)) vfat 0e1a40e5 ESP4K -S 4096
put_fs_at "$g4k" $((2304 * 4096)) $((3584 * 4096)) ext small 256 -t ext4 -b 4096 -U "$(uuid 41)" -E hash_seed=$seed -L data4k

# ---------------------------------------------------------------------------------------------
# Index (measured from the images with the real tools), then compress.
node scripts/index.mjs "$IMG" "$OUT"
for f in "$IMG"/*; do
  gzip -9n < "$f" > "$OUT/$(basename "$f").gz"
done

# Replace the committed outputs.
mkdir -p "$FINAL"
rm -rf "$FINAL/manifests"
find "$FINAL" -maxdepth 1 -type f \( -name '*.gz' -o -name '*.sfdisk.json' -o -name fixtures.json \) -delete
cp -r "$OUT"/. "$FINAL"/

# RPM fixtures have their own generator.
if [ -x rpm/generate.sh ] || [ -f rpm/generate.sh ]; then
  bash rpm/generate.sh
fi

rm -rf "$WORK"
du -ch "$FINAL"/*.gz "$FINAL"/manifests/* "$FINAL"/*.json | tail -1
