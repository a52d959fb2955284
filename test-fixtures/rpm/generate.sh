#!/usr/bin/env bash
# Regenerates the fixture RPMs for packages/rpm-inject with the real rpmbuild.
# Usage: test-fixtures/rpm/generate.sh [OUTDIR]   (default: test-fixtures/rpm/out)
# Reproducible: fixed SOURCE_DATE_EPOCH, build host and mtimes clamped to it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/out}"
command -v rpmbuild >/dev/null || { echo "rpm fixtures: rpmbuild not found, skipping" >&2; exit 0; }
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1700000000
export TZ=UTC LC_ALL=C

build() { # build SPEC SUFFIX [extra rpmbuild args...]
  local spec="$1" suffix="$2"; shift 2
  local top="$work/top-$spec-$suffix"
  mkdir -p "$top"
  rpmbuild -bb --quiet \
    --define "_topdir $top" \
    --define "_buildhost imgpatch.invalid" \
    --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" \
    --define "_build_id_links none" \
    --define "__os_install_post %{nil}" \
    --define "debug_package %{nil}" \
    "$@" "$here/specs/$spec.spec" >"$work/$spec-$suffix.log" 2>&1 || { cat "$work/$spec-$suffix.log" >&2; exit 1; }
  local rpm
  rpm="$(find "$top/RPMS" -name '*.rpm' | head -n1)"
  cp "$rpm" "$out/$spec-$suffix.noarch.rpm"
}

build imgpatch-demo gzip  --define "_binary_payload w9.gzdio"
build imgpatch-demo xz    --define "_binary_payload w6.xzdio"
build imgpatch-demo zstd  --define "_binary_payload w19.zstdio"
build imgpatch-nodes gzip --define "_binary_payload w9.gzdio"
build imgpatch-mini gzip  --define "_binary_payload w9.gzdio"
build imgpatch-mini xz    --define "_binary_payload w6.xzdio"
build imgpatch-mini zstd  --define "_binary_payload w19.zstdio"
build imgpatch-mini bzip2 --define "_binary_payload w9.bzdio"
build imgpatch-mini lzma  --define "_binary_payload w6.lzdio"
build imgpatch-mini none  --define "_binary_payload w0.ufdio"
build imgpatch-mini md5    --define "_binary_payload w9.gzdio" --define "_binary_filedigest_algorithm 1"
build imgpatch-mini sha1   --define "_binary_payload w9.gzdio" --define "_binary_filedigest_algorithm 2"
build imgpatch-mini sha512 --define "_binary_payload w9.gzdio" --define "_binary_filedigest_algorithm 10"
ls -l "$out"
