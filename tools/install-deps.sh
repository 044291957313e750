#!/bin/sh
# Install the build and test dependencies that are missing (Debian 12).
# As root: apt-get installs them.  Otherwise: print the exact command and fail.
PKGS="build-essential pkg-config libssl-dev libsasl2-dev libsasl2-modules libsasl2-modules-db sasl2-bin msmtp \
libnet-ssleay-perl libio-socket-ssl-perl \
libdb5.3-dev check python3 python3-aiosmtpd swaks openssl iproute2 procps dnsmasq-base \
util-linux liblockfile1 man-db strace"
# strace: test_local.py watches local's fsyncs and answers (group commit).
# sasl2-bin: saslauthd and testsaslauthd for test_saslauthd.py, which starts
# its own saslauthd per test (socket in the test's directory).  Installing it
# starts no system saslauthd on Debian 12: the package registers its init
# script defaults-disabled and /etc/default/saslauthd has no START=yes.
# clang and its libFuzzer runtime (a Recommends, so named: apt runs with
# --no-install-recommends) only when fuzzing is asked for: make fuzz sets FUZZ=1.
[ "${FUZZ:-0}" = 1 ] && PKGS="$PKGS clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Debian's bsd-mailx depends on an MTA (default-mta | mail-transport-agent)
# and installing it would put exim on the machine.  test_install.py only
# needs its mail(1) binary: fetch the package with apt-get download and
# unpack it (no maintainer scripts, no MTA) into $MAILX_DIR.
MAILX_DIR=/var/cache/postern-tests/bsd-mailx
mailx_missing() { [ ! -x "$MAILX_DIR/usr/bin/bsd-mailx" ]; }
fetch_mailx() {
    tmp=$(mktemp -d) || return 1
    chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -q bsd-mailx >/dev/null) || { rm -rf "$tmp"; return 1; }
    mkdir -p "$MAILX_DIR" && dpkg-deb -x "$tmp"/bsd-mailx_*.deb "$MAILX_DIR"
    rc=$?
    rm -rf "$tmp"
    chmod -R a+rX /var/cache/postern-tests
    return $rc
}
if [ -z "$missing" ]; then
    mailx_missing || exit 0
    # test_install.py (the only user) runs as root only.
    [ "$(id -u)" = 0 ] || exit 0
    fetch_mailx || { apt-get update -qq && fetch_mailx; } || exit 1
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "postern: missing build/test packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
echo "postern: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || exit 1
apt-get install -y -qq --no-install-recommends $missing || exit 1
if mailx_missing; then fetch_mailx || exit 1; fi
