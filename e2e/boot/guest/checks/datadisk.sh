# The second disk (vdb), edited by imgpatch on the host: e2fsck -fn before any mount, then the large
# edit read back against the manifest injected alongside it.
if [ -b /dev/vdb ]; then
  out=$(e2fsck -fn /dev/vdb 2>&1); rc=$?
  if [ $rc = 0 ]; then mark datadisk-e2fsck PASS "$(echo "$out" | tail -1)"
  else mark datadisk-e2fsck FAIL "rc=$rc $(echo "$out" | grep -v '^e2fsck' | head -4 | tr '\n' '|')"; fi
  mkdir -p /mnt/data
  if mount -o ro /dev/vdb /mnt/data; then
    t0=$(date +%s)
    bad=$(cd /mnt/data/large && sha256sum -c --quiet MANIFEST.sha256 2>&1 | head -5 | tr '\n' '|')
    rc=$?
    n=$(wc -l < /mnt/data/large/MANIFEST.sha256)
    entries=$(ls -f /mnt/data/large/dir10k | grep -vc '^\.\.\?$')
    big=$(stat -c %s /mnt/data/large/big.bin)
    read -r want_entries want_big < /mnt/data/large/EXPECT
    if [ -z "$bad" ] && [ "$entries" = "$want_entries" ] && [ "$big" = "$want_big" ] && [ "$n" -gt 1 ]; then
      mark large-edit PASS "$n files verified in $(( $(date +%s) - t0 ))s, dir10k=$entries, big.bin=$big"
    else
      mark large-edit FAIL "bad=$bad dir10k=$entries/$want_entries big.bin=$big/$want_big"
    fi
    umount /mnt/data
  else
    mark large-edit FAIL "mount /dev/vdb failed"
  fi
fi
