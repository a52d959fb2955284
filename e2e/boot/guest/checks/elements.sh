# Main job: the stand-in os-collect-config binary (installed by install.d at first boot) started after
# the first-boot runner completed; it leaves /run/e2e-occ with what it saw when it started.
i=0
while [ ! -f /run/e2e-occ ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
if [ -f /run/e2e-occ ]; then
  st=$(cat /run/e2e-occ)
  case "$st" in
    "firstboot-complete=yes elements-installed=yes"*) mark occ-after-firstboot PASS "$st" ;;
    *) mark occ-after-firstboot FAIL "$st" ;;
  esac
else
  mark occ-after-firstboot FAIL "os-collect-config did not start in 60s: $(systemctl is-active os-collect-config.service) $(systemctl show -p ExecMainStatus os-collect-config.service)"
fi
markers=$(cat /var/lib/imgpatch-standin/markers 2>/dev/null | wc -l)
if systemctl is-active -q imgpatch-firstboot.service && [ -f /var/lib/imgpatch/elements/installed ]; then
  mark elements-firstboot PASS "$markers stand-in phase markers; packages: $(tr '\n' ',' < /var/lib/e2e/packages 2>/dev/null)"
else
  mark elements-firstboot FAIL "firstboot=$(systemctl is-active imgpatch-firstboot.service) installed=$(cat /var/lib/imgpatch/elements/installed 2>&1) failed=$(ls /var/lib/imgpatch/firstboot/failed)"
fi
