#!/bin/sh
# postfix-compare.sh - postern and Postfix side by side in one run.
#
#   sh tests/bench/postfix-compare.sh [BUILD] [bench.py options...]
#
# Unpacks Debian's postfix package (apt-get download; dpkg -x, so nothing
# is installed and the system MTA is untouched) into $POSTFIX_ROOT
# (default /tmp/postfix-bench-root) unless it is there already, creates
# the accounts a private Postfix instance needs (postfix, group postdrop,
# pfbench with a home for its Maildir), then runs bench.py with --postfix:
# every postern row is followed by the same scenario on Postfix
# (tests/bench/postfix_instance.py).  Needs root.  Not part of make check.
set -e
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
root=${POSTFIX_ROOT:-/tmp/postfix-bench-root}

if [ "$(id -u)" != 0 ]; then
    echo "postfix-compare.sh: must run as root (Postfix's master insists)" >&2
    exit 1
fi
if [ ! -x "$root/usr/lib/postfix/sbin/master" ]; then
    dl=$(mktemp -d)
    chmod 755 "$dl"
    (cd "$dl" && apt-get download postfix)
    mkdir -p "$root"
    dpkg -x "$dl"/postfix_*.deb "$root"
    rm -rf "$dl"
fi
missing=$(LD_LIBRARY_PATH="$root/usr/lib/postfix" ldd "$root/usr/lib/postfix/sbin/master" | grep 'not found' || true)
if [ -n "$missing" ]; then
    echo "postfix-compare.sh: Postfix's libraries are missing:" >&2
    echo "$missing" >&2
    exit 1
fi
getent group postdrop >/dev/null || groupadd --system postdrop
getent passwd postfix >/dev/null || useradd --system --no-create-home --user-group \
    --home-dir /nonexistent --shell /usr/sbin/nologin postfix
getent passwd pfbench >/dev/null || useradd --system --create-home --user-group \
    --home-dir /var/tmp/pfbench-home --shell /usr/sbin/nologin pfbench

exec /usr/bin/python3 "$here/bench.py" --build "$build" --postfix "$root" "$@"
