# XFS guest (root=/dev/vda2 rootfstype=xfs, /boot from fstab): both volumes were edited by imgpatch
# on the host through an overlay. The kernel mounts them, reads what imgpatch wrote, and writes to
# them itself; any XFS complaint in dmesg fails the run.
fs=$(findmnt -no FSTYPE /)
bfs=$(findmnt -no FSTYPE /boot)
hello=$(cat /opt/e2e/hello 2>&1)
mode=$(stat -c '%a %u:%g' /opt/e2e/hello 2>&1)
link=$(readlink /opt/e2e/hello.link 2>&1)
if [ "$fs" = xfs ] && [ "$hello" = "hello from imgpatch" ] && [ "$mode" = "640 0:0" ] && [ "$link" = hello ]; then
  mark xfs-root PASS "/ is $fs; /opt/e2e/hello $mode -> read back"
else
  mark xfs-root FAIL "fs=$fs hello=$hello mode=$mode link=$link"
fi
bm=$(cat /boot/e2e-marker 2>&1)
if [ "$bfs" = xfs ] && [ "$bm" = "boot volume edited" ]; then
  mark xfs-boot PASS "/boot is $bfs (fstab by UUID); marker read back"
else
  mark xfs-boot FAIL "fs=$bfs marker=$bm"
fi
# The kernel writes after imgpatch: new files on both volumes, then a sync.
if echo guest > /opt/e2e/written-by-guest && echo guest > /boot/written-by-guest && sync; then
  mark xfs-guest-write PASS "the kernel wrote to both imgpatch-edited volumes"
else
  mark xfs-guest-write FAIL "write failed"
fi
bad=$(dmesg | grep -E 'XFS \([^)]*\): .*(orrupt|rror|Internal error|Metadata|unmount and run xfs_repair)' || true)
if [ -n "$bad" ]; then
  mark dmesg-xfs FAIL "$(echo "$bad" | head -3 | tr '\n' '|')"
else
  mark dmesg-xfs PASS "$(dmesg | grep -c 'XFS (') XFS lines, none an error"
fi
