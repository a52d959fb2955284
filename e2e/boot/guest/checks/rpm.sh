# RPM payload as the guest sees it: one data line per path in /etc/e2e/rpm-paths (the host compares
# them with `rpm -qp --dump`), then the deferred scriptlets' evidence.
if [ "$boot_no" = 1 ]; then
  while IFS= read -r p; do
    [ -n "$p" ] || continue
    if [ ! -e "$p" ] && [ ! -L "$p" ]; then data "rpm|$p|MISSING"; continue; fi
    st=$(stat -c '%f|%a|%U|%G|%s|%i|%h' "$p")
    if [ -L "$p" ]; then extra=$(readlink "$p")
    elif [ -f "$p" ]; then extra=$(sha256sum < "$p" | cut -d' ' -f1)
    else extra=-; fi
    data "rpm|$p|$st|$extra"
  done < /etc/e2e/rpm-paths
  data "rpm-end"
  # %pre made the user; pretrans (Lua), post and posttrans ran in that order at first boot.
  order=$(grep -xE 'pretrans|post 1|posttrans' /var/log/imgpatch-firstboot.log | tr '\n' ',')
  if getent passwd imgsvc >/dev/null && [ "$order" = "pretrans,post 1,posttrans," ]; then
    mark rpm-scriptlets PASS "imgsvc=$(id -u imgsvc):$(id -g imgsvc) order=$order"
  else
    mark rpm-scriptlets FAIL "imgsvc=$(getent passwd imgsvc) order=$order"
  fi
fi
