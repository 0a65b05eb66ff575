#!/usr/bin/env bash
# Install the system packages bindep.txt lists for the given bindep profiles (build, test) when they are missing.
# Usage: scripts/ensure-packages.sh BINDEP PROFILE...   (BINDEP: the venv's bindep executable)
# As root: apt-get (Debian/Ubuntu) or dnf (Fedora/RHEL-like). Otherwise: print the exact command and fail.
set -euo pipefail
bindep=$1; shift
rc=0
missing=$("$bindep" -b -f "$(dirname "$0")/../bindep.txt" "$@") || rc=$?
[ "$rc" -le 1 ] || { echo "bindep could not read bindep.txt (exit $rc): fix the line it names" >&2; exit "$rc"; }
missing=$(echo $missing)
[ -n "$missing" ] || exit 0
if command -v apt-get >/dev/null; then
  install=(apt-get install -y -qq --no-install-recommends); update=(apt-get update -qq)
elif command -v dnf >/dev/null; then
  install=(dnf install -y -q); update=(true)
else
  echo "Missing system packages: $missing; install them with your package manager (bindep.txt names them)" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages: $missing" >&2
  echo "Install them with:  sudo ${update[*]} && sudo ${install[*]} $missing" >&2
  exit 1
fi
echo "Installing system packages: $missing"
export DEBIAN_FRONTEND=noninteractive
"${update[@]}"
"${install[@]}" $missing
