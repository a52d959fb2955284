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
# One dpkg -s for the whole list: each call re-reads the status file, ~280 calls take minutes under TCG.
# Unknown packages are reported on stderr, kept apart (interleaved with stdout they are lost).
n=$(grep -c . /etc/e2e/deb-installed)
out=$(dpkg -s $(cat /etc/e2e/deb-installed) 2>/tmp/e2e-dpkg-s.err)
ok=$(printf '%s\n' "$out" | grep -c '^Status: install ok installed$')
bad=$( (printf '%s\n' "$out" | awk '/^Package: /{p=$2} /^Status: /{s=substr($0,9); if (s!="install ok installed") print p"=["s"]"}'; grep '^dpkg' /tmp/e2e-dpkg-s.err) | head -5 | tr '\n' ' ')
if [ "$n" -gt 0 ] && [ "$ok" -eq "$n" ] && [ -z "$bad" ]; then
  mark dpkg-status PASS "$n packages: install ok installed (dpkg -s)"
else
  mark dpkg-status FAIL "$ok of $n install ok installed; $(echo "$bad" | cut -c1-300)"
fi
if out=$(os-collect-config --help 2>&1); then
  mark occ-help PASS "$(echo "$out" | head -1 | cut -c1-80)"
else
  mark occ-help FAIL "exit $?: $(echo "$out" | tail -2 | tr '\n' '|' | cut -c1-200)"
fi
