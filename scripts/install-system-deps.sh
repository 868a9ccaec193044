#!/usr/bin/env bash
# Install the Debian packages the test suite needs (real web servers and
# helper tools), only when their binary is missing. Idempotent; run as root.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# package -> binary that proves it is installed
declare -A BINARY=(
    [nginx]=nginx
    [apache2]=apache2
    [lighttpd]=lighttpd
    [redis-server]=redis-server
)
# (benchmarks/ needs more: see benchmarks/README.md)

# Debian keeps apache2/nginx/lighttpd in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for pkg in "${!BINARY[@]}"; do
    command -v "${BINARY[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-system-deps: all present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: need root to install: ${missing[*]}" >&2
    exit 1
fi

# A policy-rc.d that exits 101 keeps the packages' init scripts from starting
# system daemons (which would grab port 80 and outlive the tests). Docker
# images ship one already; add a temporary one only when there is none.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
fi

# Wait for, rather than fail on, another apt/dpkg run holding the lock.
APT=(apt-get -q -o DPkg::Lock::Timeout=600)

echo "install-system-deps: installing ${missing[*]}"
"${APT[@]}" update
"${APT[@]}" install -y --no-install-recommends "${missing[@]}"
