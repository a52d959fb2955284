#!/usr/bin/env bash
# make-tree.sh <dir> <full|small>: the source tree that mke2fs -d copies into the ext fixtures.
# Needs root (chown to other uids, mknod, security.* xattrs). Every time stamp is fixed.
set -euo pipefail
dir=$1 kind=$2
here=$(cd "$(dirname "$0")" && pwd)
pat() { node "$here/pattern.mjs" "$@"; }
EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"

# --- regular files of assorted sizes ---
: > empty
printf 'hello, world\n' > small.txt
pat text 60 inline > exactly60.txt # the size of i_block: the inline_data boundary
pat text 61 inline > just61.txt
pat text 4096 block > one-block.txt
pat blocks 102400 medium > medium.bin # past the 12 direct blocks of block-mapped files
if [ "$kind" = full ]; then
  pat blocks $((3 * 1024 * 1024 + 1000)) large > large.bin # double-indirect with 1 KiB blocks
else
  pat blocks $((1024 * 1024 + 10)) large > large.bin
fi
# sparse: data at 0, at 1 MiB and at the end of 8 MiB; holes elsewhere
truncate -s 8M sparse.bin
pat blocks 4096 sparse-a | dd of=sparse.bin conv=notrunc status=none
pat blocks 4096 sparse-b | dd of=sparse.bin bs=4096 seek=256 conv=notrunc status=none
pat blocks 4096 sparse-c | dd of=sparse.bin bs=4096 seek=2047 conv=notrunc status=none
truncate -s 1M hole-only.bin # size without any data block
printf 'space\n' > 'name with spaces.txt'
printf 'utf8\n' > 'ünïcødé-名前.txt'
printf 'x\n' > "$(printf 'n%.0s' {1..255})" # longest legal name

# --- nested directories ---
mkdir -p dir/nested/a/b/c/d/e
printf 'deep\n' > dir/nested/a/b/c/d/e/deep.txt
for i in 1 2 3; do printf 'sibling %s\n' "$i" > "dir/nested/file$i"; done
mkdir dir/empty-dir

# --- symlinks ---
mkdir links
ln -s ../small.txt links/fast
ln -s "$(printf '../dir/nested/a/b/c/d/e/%.0s' {1..3})deep-target-that-is-long-enough-to-need-a-block" links/slow-60plus
ln -s "$(printf 'x%.0s' {1..59})" links/fast-59 # longest fast symlink: 59 bytes + NUL in i_block
ln -s "$(printf 'y%.0s' {1..60})" links/slow-60  # first length stored in a block
ln -s does-not-exist links/dangling
ln -s /etc/passwd links/absolute
ln -s ../dir links/to-dir

# --- hard links (one inode, several names, across directories) ---
mkdir hard
printf 'linked\n' > hard/a
ln hard/a hard/b
ln hard/a dir/hard-c
pat blocks 8192 hardbig > hard/big1
ln hard/big1 hard/big2

# --- extended attributes ---
mkdir xattr
printf 'x\n' > xattr/selinux
setfattr -h -n security.selinux -v 'system_u:object_r:etc_t:s0' xattr/selinux
printf 'x\n' > xattr/user
setfattr -h -n user.text -v 'hello' xattr/user
setfattr -h -n user.binary -v 0x00ff10200a0d xattr/user
setfattr -h -n user.empty xattr/user
setfattr -h -n trusted.admin -v 'trusted-value' xattr/user
printf 'x\n' > xattr/many # more than fits in the inode: spills into an xattr block
for i in $(seq -w 1 12); do setfattr -h -n "user.attr$i" -v "value-$i-$(printf 'v%.0s' {1..40})" xattr/many; done
printf 'x\n' > xattr/large-value
setfattr -h -n user.big -v "$(printf 'L%.0s' {1..900})" xattr/large-value
setfattr -h -n user.dir-attr -v 'on a directory' xattr
setfattr -h -n security.selinux -v 'system_u:object_r:usr_t:s0' dir
ln -s small.txt xattr/link-with-attr
setfattr -h -n trusted.on-link -v 'symlink xattr' xattr/link-with-attr

# --- modes and owners ---
mkdir modes
for m in 4755 2755 6755 0000 0777 0600 0444 1755; do printf '%s\n' "$m" > "modes/f$m"; chmod "$m" "modes/f$m"; done
mkdir modes/sticky && chmod 1777 modes/sticky
mkdir modes/private && chmod 0700 modes/private
mkdir modes/zero-dir && chmod 0000 modes/zero-dir
mkdir owners
for ug in 1000:1000 1001:100 65534:65534 100000:200000 4294967294:4294967294; do
  f="owners/u${ug%%:*}-g${ug#*:}"
  printf '%s\n' "$ug" > "$f"
  chown "$ug" "$f"
done
mkdir owners/dir-1234 && chown 1234:5678 owners/dir-1234
printf 'in owned dir\n' > owners/dir-1234/file && chown 1234:5678 owners/dir-1234/file
ln -s ../small.txt owners/link-1000 && chown -h 1000:1000 owners/link-1000

# --- special files ---
mkdir special
mknod special/null-like c 1 3
mknod special/sda1-like b 8 1
mknod special/big-dev c 259 65536 # major/minor beyond the old 8-bit encoding
mkfifo special/fifo
node -e 'const s=require("net").createServer();s.listen(process.argv[1],()=>process.exit(0))' special/socket

# --- a directory large enough to be htree-indexed (full tree only) ---
if [ "$kind" = full ]; then
  mkdir bigdir
  (cd bigdir && for i in $(seq -w 0 5099); do : > "entry-$i-with-a-longer-name"; done)
fi

# --- time stamps: fixed, some with nanoseconds, one before 1970, one past 2038 (full only) ---
find . -depth -exec touch -h -d "@$EPOCH" {} +
touch -h -d "@1600000000.123456789" small.txt
touch -h -d "@1234567890.5" dir/nested/file1
if [ "$kind" = full ]; then
  touch -h -d "@-86400" dir/nested/file2        # 1969-12-31
  touch -h -d "@4102444800.25" dir/nested/file3 # 2100-01-01: needs the extra epoch bits
fi
touch -h -d "@$EPOCH" dir/nested . dir
