# First-boot scripts: on boot 1 they ran once, in order, in this boot; on later boots they did not rerun.
# Each queued script appends "<name> <boot_id>" to /var/lib/e2e/firstboot.log.
fb_log=/var/lib/e2e/firstboot.log
fb_got=$(cut -d' ' -f1 "$fb_log" 2>/dev/null | tr '\n' ' ')
fb_expect="fb-one fb-two fb-three "
fb_this=$(grep -c " $boot_id\$" "$fb_log" 2>/dev/null)
fb_pending=$(ls -A /var/lib/imgpatch/firstboot/pending 2>/dev/null | wc -l)
fb_failed=$(ls -A /var/lib/imgpatch/firstboot/failed 2>/dev/null | wc -l)
fb_state="ran=[$fb_got] this-boot=$fb_this pending=$fb_pending failed=$fb_failed stamp=$([ -f /var/lib/imgpatch/firstboot/complete ] && echo yes || echo no)"
if [ "$boot_no" = 1 ]; then
  if [ "$fb_got" = "$fb_expect" ] && [ "$fb_this" = 3 ] && [ "$fb_pending" = 0 ] && [ "$fb_failed" = 0 ] \
    && [ -f /var/lib/imgpatch/firstboot/complete ]; then
    mark firstboot-once-in-order PASS "$fb_state"
  else
    mark firstboot-once-in-order FAIL "$fb_state"
  fi
else
  if [ "$fb_got" = "$fb_expect" ] && [ "$fb_this" = 0 ]; then
    mark firstboot-not-rerun PASS "$fb_state"
  else
    mark firstboot-not-rerun FAIL "$fb_state"
  fi
fi
