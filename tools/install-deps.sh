#!/bin/sh
# Install the build and test dependencies that are missing (Debian 12).
# As root: apt-get installs them.  Otherwise: print the exact command and fail.
PKGS="build-essential pkg-config libssl-dev libsasl2-dev libsasl2-modules libsasl2-modules-db sasl2-bin msmtp \
libdb5.3-dev check python3 python3-aiosmtpd swaks openssl iproute2 procps dnsmasq-base \
util-linux"
# clang (libFuzzer) only when fuzzing is asked for: make fuzz sets FUZZ=1.
[ "${FUZZ:-0}" = 1 ] && PKGS="$PKGS clang"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "postern: missing build/test packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
echo "postern: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || exit 1
apt-get install -y -qq --no-install-recommends $missing || exit 1
