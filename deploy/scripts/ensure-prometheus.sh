#!/bin/sh
# Makes `prometheus` and `promtool` available (Debian's package), quietly and idempotently.
# `make test` runs it; CI runs as root on Debian. Prints nothing when they are already there.
set -eu
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-prometheus: prometheus/promtool missing; run as root or: apt-get install prometheus" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# The package's postinst must not start a system-wide server: policy-rc.d denies it.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
status=0
apt-get install -y -qq --no-install-recommends prometheus >/dev/null || status=$?
if [ "$created_policy" -eq 1 ]; then
  rm -f "$policy"
fi
exit "$status"
