#!/bin/sh
# run-instance.sh - `make run`: a throwaway instance in ./run, in the foreground.
#
# Creates ./run with `postern init` when it does not exist yet (ports
# 2525/2526 unless PORT=N), then runs the master in the foreground with the
# whole maillog on the terminal.  Ctrl-C stops it cleanly (SIGINT = stop).
# Environment: BUILD (default build), RUN_DIR (default ./run), PORT.
set -e
export POSTERN_ETC_DIR="${POSTERN_ETC_DIR:-$(cd "$(dirname "$0")/.." && pwd)/etc}"
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUN=${RUN_DIR:-$PWD/run}
POSTERN="$BUILD/bin/postern"
MASTER="$BUILD/libexec/master"

if [ ! -f "$RUN/main.cf" ]; then
    # Run by root, init makes the real model (daemons as postern, maildrop
    # group postdrop): create the accounts as `make install` would.
    if [ "$(id -u)" = 0 ]; then
        if ! getent group postdrop >/dev/null; then
            echo "run-instance: creating group postdrop"
            groupadd --system postdrop
        fi
        if ! getent passwd postern >/dev/null; then
            echo "run-instance: creating user postern"
            useradd --system --user-group --no-create-home \
                --home-dir /nonexistent --shell /usr/sbin/nologin postern
        fi
    fi
    "$POSTERN" init "$RUN" --port "${PORT:-2525}"
fi
if "$POSTERN" -c "$RUN" status >/dev/null 2>&1; then
    echo "run-instance: $RUN is already running; stop it with: $POSTERN -c $RUN stop" >&2
    exit 1
fi
port=$(sed -n 's/^127\.0\.0\.1:\([0-9]*\)[[:space:]]*inet.*smtpd.*/\1/p' "$RUN/master.cf" | head -n 1)
user=$(id -un)
cat <<INFO

postern instance $RUN -- SMTP on 127.0.0.1:${port:-?}
  send a first message (in another terminal):
    python3 -c 'import smtplib; smtplib.SMTP("127.0.0.1", ${port:-2525}).sendmail("me@localhost", ["$user@localhost"], "Subject: hello\n\nfirst message\n")'
    swaks --server 127.0.0.1:${port:-2525} --from me@localhost --to $user@localhost
    printf 'Subject: hello\n\nlocal submission\n' | $(dirname "$POSTERN")/sendmail -C $RUN $user
  it lands in $RUN/mail/$user/new/
  log: $RUN/log/maillog (shown below); queue: $RUN/spool; config: $RUN/main.cf, $RUN/master.cf
  Ctrl-C stops the mail system.

INFO
mkdir -p "$RUN/log"
touch "$RUN/log/maillog"
# The master copies its own lines to stderr; the others come from the log.
# tail --pid ends with this script (background jobs ignore Ctrl-C).
tail -n 0 -F --pid=$$ "$RUN/log/maillog" 2>/dev/null | grep --line-buffered -v '/master\[' &
status=0
"$MASTER" -f -c "$RUN" || status=$?
exit $status
