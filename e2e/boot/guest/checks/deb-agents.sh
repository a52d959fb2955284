# The Heat agents' Debian packages, unpacked by imgpatch --install at build time: the first boot's
# dpkg-configure script (deferred preinsts, dpkg --configure -a) ran once and succeeded, then
# `dpkg --audit` prints nothing, `dpkg -s` says "install ok installed" for every package imgpatch
# installed (/etc/e2e/deb-installed, listed on the host from the image's status file) and the agent runs.
fb=$(systemctl is-active imgpatch-firstboot.service)
failed=$(ls /var/lib/imgpatch/firstboot/failed 2>/dev/null | tr '\n' ' ')
if [ "$fb" = active ] && [ -z "$failed" ] && ls /var/lib/imgpatch/firstboot/done 2>/dev/null | grep -q dpkg-configure; then
  mark deb-firstboot-configure PASS "$(journalctl -b -u imgpatch-firstboot.service -o cat 2>/dev/null | grep -c '^Setting up ') 'Setting up' lines"
else
  mark deb-firstboot-configure FAIL "firstboot=$fb failed=$failed done=$(ls /var/lib/imgpatch/firstboot/done 2>&1 | tr '\n' ' ')"
fi
audit=$(dpkg --audit 2>&1)
if [ -z "$audit" ]; then
  mark dpkg-audit PASS "dpkg --audit printed nothing"
else
  mark dpkg-audit FAIL "$(echo "$audit" | head -5 | tr '\n' '|')"
fi
n=0
bad=""
while read -r p; do
  [ -n "$p" ] || continue
  n=$((n + 1))
  st=$(dpkg -s "$p" 2>&1 | sed -n 's/^Status: //p')
  [ "$st" = "install ok installed" ] || bad="$bad $p=[$st]"
done < /etc/e2e/deb-installed
if [ "$n" -gt 0 ] && [ -z "$bad" ]; then
  mark dpkg-status PASS "$n packages: install ok installed"
else
  mark dpkg-status FAIL "$n packages;$(echo "$bad" | cut -c1-300)"
fi
if out=$(os-collect-config --help 2>&1); then
  mark occ-help PASS "$(echo "$out" | head -1 | cut -c1-80)"
else
  mark occ-help FAIL "exit $?: $(echo "$out" | tail -2 | tr '\n' '|' | cut -c1-200)"
fi
