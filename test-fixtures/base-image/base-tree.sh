#!/usr/bin/env bash
# base-tree.sh ROOT_DIR BOOT_DIR ROOT_UUID: the file trees of the main job's base images (shared by
# make-base-image.sh, ext4, and make-xfs-base-image.sh, XFS): a CentOS Stream 9-shaped root (systemd
# layout, passwd/group/shadow, os-release, SELinux config, stub executables) and a /boot with a stub
# kernel and a loader entry naming root=UUID=ROOT_UUID. /etc/fstab is left to the caller (it names
# the filesystems). Sourced or run; the directories must exist and be empty.
set -euo pipefail
R=$1
B=$2
ROOT_UUID=$3
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

