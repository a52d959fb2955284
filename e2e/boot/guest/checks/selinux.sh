# SELinux guest (Debian + selinux-policy-default, SELINUX=enforcing, labelled by setfiles at build
# time): imgpatch edited it through an overlay without any relabel (no /.autorelabel). The kernel
# enforces the policy; the guest's own tools judge the labels imgpatch wrote.
mode=$(getenforce 2>&1)
if [ "$mode" = Enforcing ] && [ ! -e /.autorelabel ]; then
  mark selinux-enforcing PASS "getenforce: $mode; no /.autorelabel"
else
  mark selinux-enforcing FAIL "getenforce: $mode; autorelabel=$([ -e /.autorelabel ] && echo present || echo absent)"
fi
# Every path imgpatch created (listed at edit time in /etc/e2e/selinux-paths): the label on disk is
# the one the guest's policy assigns (restorecon -n prints what it would change: nothing).
wrong=""
n=0
while IFS= read -r p; do
  [ -n "$p" ] || continue
  n=$((n + 1))
  have=$(stat -c %C "$p" 2>&1)
  want=$(matchpathcon -n "$p" 2>&1)
  data "selinux-label $p $have"
  [ "$have" = "$want" ] || wrong="$wrong $p:$have!=$want"
done < /etc/e2e/selinux-paths
fix=$(restorecon -R -n -v $(cat /etc/e2e/selinux-paths) 2>&1)
if [ "$n" -gt 0 ] && [ -z "$wrong" ] && [ -z "$fix" ]; then
  mark selinux-labels PASS "$n paths labelled as matchpathcon says; restorecon -n: nothing to fix"
else
  mark selinux-labels FAIL "$n paths;$(echo "$wrong" | cut -c1-300) restorecon: $(echo "$fix" | head -3 | tr '\n' '|')"
fi
# Denials that involve what imgpatch wrote (unlabeled files, our unit, our files' types).
den=$(dmesg | grep 'avc:  denied' | grep -E 'unlabeled_t|e2e|/opt/e2e|/srv/e2e' || true)
all=$(dmesg | grep -c 'avc:  denied' || true)
if [ -z "$den" ]; then
  mark selinux-avc PASS "no denial involves imgpatch's files ($all denials in total)"
else
  mark selinux-avc FAIL "$(echo "$den" | head -2 | tr '\n' '|' | cut -c1-300)"
fi
# The check unit (started by systemd under the enforcing policy) reads a file imgpatch wrote.
if [ "$(cat /srv/e2e-web/index.html 2>&1)" = "served by imgpatch" ]; then
  mark selinux-read PASS "$(ls -Z /srv/e2e-web/index.html)"
else
  mark selinux-read FAIL "$(cat /srv/e2e-web/index.html 2>&1 | head -1)"
fi
