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

# --- root tree ---
cd "$R"
mkdir -p usr/bin usr/sbin usr/lib/systemd/system usr/lib/systemd/system-preset usr/lib64 usr/libexec \
  usr/local/bin usr/local/sbin usr/share/doc etc/systemd/system/multi-user.target.wants \
  etc/systemd/system/getty.target.wants etc/selinux/targeted/contexts/files etc/sysconfig \
  etc/ssh etc/yum.repos.d etc/pki var/lib var/log var/tmp var/cache home/centos/.ssh root \
  boot dev proc sys run tmp mnt opt srv media
ln -s usr/bin bin
ln -s usr/sbin sbin
ln -s usr/lib lib
ln -s usr/lib64 lib64
ln -s ../run var/run
ln -s ../run/lock var/lock
chmod 1777 tmp var/tmp
chmod 0550 root
chmod 0700 home/centos home/centos/.ssh

cat > usr/lib/os-release <<'X'
NAME="CentOS Stream"
VERSION="9"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="9"
PLATFORM_ID="platform:el9"
PRETTY_NAME="CentOS Stream 9"
ANSI_COLOR="0;31"
HOME_URL="https://centos.org/"
X
ln -s ../usr/lib/os-release etc/os-release
echo "CentOS Stream release 9" > etc/centos-release
ln -s centos-release etc/redhat-release
ln -s centos-release etc/system-release

cat > etc/passwd <<'X'
root:x:0:0:root:/root:/bin/bash
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin
systemd-journal-remote:x:998:998:Journal Remote:/var/log/journal/remote:/sbin/nologin
sshd:x:74:74:Privilege-separated SSH:/usr/share/empty.sshd:/sbin/nologin
centos:x:1000:1000:Cloud User:/home/centos:/bin/bash
X
cat > etc/group <<'X'
root:x:0:
bin:x:1:
daemon:x:2:
wheel:x:10:centos
nobody:x:65534:
systemd-journal:x:190:
sshd:x:74:
centos:x:1000:
X
printf 'root:!!:19675:0:99999:7:::\ncentos:!!:19675:0:99999:7:::\n' > etc/shadow
printf 'root:!!::\ncentos:!!::\n' > etc/gshadow
chmod 0000 etc/shadow etc/gshadow
cat > etc/fstab <<X
# /etc/fstab (made by make-base-image.sh)
UUID=$ROOT_UUID /     ext4 defaults 0 1
UUID=$BOOT_UUID /boot ext4 defaults 1 2
tmpfs           /tmp  tmpfs defaults 0 0
X
echo localhost.localdomain > etc/hostname
: > etc/machine-id
ln -s ../usr/share/zoneinfo/UTC etc/localtime
mkdir -p usr/share/zoneinfo && printf 'TZif2-stub\n' > usr/share/zoneinfo/UTC
cat > etc/selinux/config <<'X'
# This file controls the state of SELinux on the system.
SELINUX=enforcing
SELINUXTYPE=targeted
X
printf '/.*\tsystem_u:object_r:default_t:s0\n/etc(/.*)?\tsystem_u:object_r:etc_t:s0\n/usr/bin(/.*)?\tsystem_u:object_r:bin_t:s0\n' \
  > etc/selinux/targeted/contexts/files/file_contexts

for b in bash sh python3 systemctl sshd cloud-init; do
  printf '#!/bin/sh\n# stub of %s (base image for imgpatch tests; not bootable)\nexit 0\n' "$b" > usr/bin/$b
  chmod 0755 usr/bin/$b
done
mv usr/bin/sshd usr/sbin/sshd
ln -s ../bin/systemctl usr/sbin/nologin-not-real 2>/dev/null || true
rm -f usr/sbin/nologin-not-real
printf '#!/bin/sh\nexit 1\n' > usr/sbin/nologin && chmod 0755 usr/sbin/nologin

S=usr/lib/systemd/system
unit() { # name, then the unit text on stdin
  cat > "$S/$1"
}
unit basic.target <<'X'
[Unit]
Description=Basic System
Requires=sysinit.target
After=sysinit.target
X
unit sysinit.target <<'X'
[Unit]
Description=System Initialization
X
unit network.target <<'X'
[Unit]
Description=Network
X
unit network-online.target <<'X'
[Unit]
Description=Network is Online
After=network.target
X
unit multi-user.target <<'X'
[Unit]
Description=Multi-User System
Requires=basic.target
After=basic.target
AllowIsolate=yes
X
unit getty.target <<'X'
[Unit]
Description=Login Prompts
X
unit sshd.service <<'X'
[Unit]
Description=OpenSSH server daemon
After=network.target

[Service]
Type=notify
ExecStart=/usr/sbin/sshd -D $OPTIONS

[Install]
WantedBy=multi-user.target
X
unit cloud-init.service <<'X'
[Unit]
Description=Initial cloud-init job (metadata service crawler)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/cloud-init init
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
X
unit getty@.service <<'X'
[Unit]
Description=Getty on %I

[Service]
ExecStart=-/sbin/agetty -o '-p -- \\u' --noclear - $TERM

[Install]
WantedBy=getty.target
DefaultInstance=tty1
X
printf 'enable sshd.service\nenable cloud-init.service\ndisable *\n' > usr/lib/systemd/system-preset/90-default.preset
ln -s /usr/lib/systemd/system/multi-user.target etc/systemd/system/default.target
ln -s /usr/lib/systemd/system/sshd.service etc/systemd/system/multi-user.target.wants/sshd.service
ln -s /usr/lib/systemd/system/cloud-init.service etc/systemd/system/multi-user.target.wants/cloud-init.service
ln -s /usr/lib/systemd/system/getty@.service etc/systemd/system/getty.target.wants/getty@tty1.service

# --- /boot tree ---
cd "$B"
mkdir -p grub2 loader/entries
printf 'stub kernel\n' > vmlinuz-5.14.0-stub.el9.x86_64
printf 'set default=0\nset timeout=1\n' > grub2/grub.cfg
printf 'title CentOS Stream 9\nlinux /vmlinuz-5.14.0-stub.el9.x86_64\noptions root=UUID=%s ro\n' "$ROOT_UUID" \
  > loader/entries/centos-stub.conf

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
