#!/bin/sh
# install.sh - `make install` / `make uninstall` for the system instance.
#
#   sh tools/install.sh install|uninstall
# Settings (environment, set by the Makefile): BUILD PREFIX DESTDIR
# SYSCONFDIR SPOOLDIR DATADIR_VAR SYSTEMDDIR CREATE_ACCOUNTS.
#
# Layout (what a Debian MTA package provides, under PREFIX):
#   PREFIX/sbin/sendmail, postdrop (setgid postdrop), postern (setgid
#   postdrop, like Postfix's postqueue: every user's mailq reaches
#   public/showq; doc/queue-admin.md)
#   PREFIX/bin/mailq, PREFIX/bin/newaliases -> ../sbin/sendmail
#   PREFIX/lib/postern/DAEMON          daemon_directory
#   PREFIX/share/postern/              templates for `postern init`
#   PREFIX/share/man/man1/{postern,sendmail}.1, man5/postern.5
#   SYSCONFDIR/{main.cf,master.cf}    (/etc/postern)
#   /etc/aliases when missing (alias_maps = hash:/etc/aliases, as Debian)
#   SPOOLDIR (/var/spool/postern), DATADIR_VAR (/var/lib/postern)
#   SYSTEMDDIR/postern.service         (/lib/systemd/system)
#
# Contract:
#   - An existing PREFIX/sbin/sendmail, PREFIX/bin/mailq or newaliases
#     that is not postern's (another MTA's) stops the install with one
#     line, unless FORCE=yes.
#   - A configuration file that exists and differs from the one being
#     installed is never overwritten: the new one goes next to it as
#     FILE.postern-new and a note is printed.
#   - Accounts (group postdrop, user postern) are created when missing, as
#     root, when DESTDIR is empty or CREATE_ACCOUNTS=yes.  Ownership and
#     the setgid bit are applied when running as root and the accounts
#     exist; otherwise a note says what to do.
#   - uninstall removes programs, daemons, templates, man pages, the unit
#     and the configuration files that are unchanged from the shipped ones;
#     it never touches the spool (queued mail stays) nor edited files nor
#     /etc/aliases nor the accounts.
set -e
action=$1
: "${BUILD:=build}" "${PREFIX:=/usr/local}" "${SYSCONFDIR:=/etc/postern}"
: "${SPOOLDIR:=/var/spool/postern}" "${DATADIR_VAR:=/var/lib/postern}"
: "${SYSTEMDDIR:=/lib/systemd/system}" "${CREATE_ACCOUNTS:=}"
D=${DESTDIR:-}
SBIN=$PREFIX/sbin
BIN=$PREFIX/bin
LIBDIR=$PREFIX/lib/postern
SHARE=$PREFIX/share/postern
MAN=$PREFIX/share/man
DAEMONS="master smtpd cleanup pickup qmgr smtp local showq"
PROGS="sendmail postdrop postern"
GEN=$BUILD/install
root=no
[ "$(id -u)" = 0 ] && root=yes

note() { echo "postern install: $*"; }

# The shipped configuration with this installation's paths.
generate() {
    mkdir -p "$GEN"
    sed -e "s|^daemon_directory = .*|daemon_directory = $LIBDIR|" \
        -e "s|^command_directory = .*|command_directory = $SBIN|" \
        -e "s|^queue_directory = .*|queue_directory = $SPOOLDIR|" \
        -e "s|^data_directory = .*|data_directory = $DATADIR_VAR|" \
        etc/main.cf > "$GEN/main.cf"
    # postern(5): the format, then every parameter of params.def.
    { cat doc/man/postern.5.in
      sed -n 's/\\/\\e/g; s/^PARAM("\([^"]*\)", *PARAM_[A-Z]*, *\(.*\), *"\(.*\)")$/.TP\n.B \1\n\\\&\3 (default: \2)/p' common/params.def
      printf '.SH "SEE ALSO"\n.BR postern (1),\n.BR sendmail (1)\n'
    } > "$GEN/postern.5"
    cp etc/master.cf "$GEN/master.cf"
    cp etc/aliases "$GEN/aliases"
    sed -e "s|/usr/local/sbin/postern|$SBIN/postern|g" \
        -e "s|/var/spool/postern|$SPOOLDIR|g" \
        etc/postern.service > "$GEN/postern.service"
}

have_accounts() {
    getent group postdrop >/dev/null 2>&1 && getent passwd postern >/dev/null 2>&1
}

install_conf() {          # install_conf NAME
    src=$GEN/$1 dst=$D$SYSCONFDIR/$1
    if [ ! -e "$dst" ]; then
        install -m 0644 "$src" "$dst"
    elif cmp -s "$src" "$dst"; then
        :
    else
        install -m 0644 "$src" "$dst.postern-new"
        note "kept your $SYSCONFDIR/$1; the shipped one is $SYSCONFDIR/$1.postern-new"
    fi
}

do_install() {
    for p in $PROGS; do
        [ -x "$BUILD/bin/$p" ] || { echo "postern install: $BUILD/bin/$p not built (make all)" >&2; exit 1; }
    done
    # Never replace another MTA's sendmail, mailq or newaliases (remove
    # that package first); FORCE=yes overrides.
    if [ "${FORCE:-}" != yes ]; then
        for f in "$SBIN/sendmail" "$BIN/mailq" "$BIN/newaliases"; do
            if [ -e "$D$f" ] || [ -L "$D$f" ]; then
                if ! grep -q "postern" "$D$f" 2>/dev/null; then
                    echo "postern install: $f belongs to another mail system; remove it" \
                         "(its package) first, or run make install FORCE=yes" >&2
                    exit 1
                fi
            fi
        done
    fi
    generate
    if [ "$root" = yes ] && { [ -z "$D" ] || [ "$CREATE_ACCOUNTS" = yes ]; }; then
        if ! getent group postdrop >/dev/null 2>&1; then
            groupadd --system postdrop
            note "created the group postdrop"
        fi
        if ! getent passwd postern >/dev/null 2>&1; then
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin postern
            note "created the user postern"
        fi
    fi
    install -d -m 0755 "$D$SBIN" "$D$BIN" "$D$LIBDIR" "$D$SHARE" "$D$MAN/man1" \
        "$D$MAN/man5" "$D$SYSCONFDIR" "$D$SYSTEMDDIR"
    install -m 0755 "$BUILD/bin/sendmail" "$D$SBIN/sendmail"
    install -m 0755 "$BUILD/bin/postern" "$D$SBIN/postern"
    install -m 0755 "$BUILD/bin/postdrop" "$D$SBIN/postdrop"
    ln -sf ../sbin/sendmail "$D$BIN/mailq"
    ln -sf ../sbin/sendmail "$D$BIN/newaliases"
    for d in $DAEMONS; do
        if [ -x "$BUILD/libexec/$d" ]; then
            install -m 0755 "$BUILD/libexec/$d" "$D$LIBDIR/$d"
        fi
    done
    for f in main.cf master.cf aliases; do
        install -m 0644 "etc/$f" "$D$SHARE/$f"
    done
    install_conf main.cf
    install_conf master.cf
    # alias_maps = hash:/etc/aliases, shared with any other MTA (Debian).
    if [ ! -e "$D/etc/aliases" ]; then
        install -m 0644 etc/aliases "$D/etc/aliases"
        note "installed /etc/aliases"
    fi
    install -m 0644 "$GEN/postern.service" "$D$SYSTEMDDIR/postern.service"
    install -m 0644 doc/man/postern.1 doc/man/sendmail.1 "$D$MAN/man1/"
    install -m 0644 "$GEN/postern.5" "$D$MAN/man5/"

    # The spool: the master completes it (hashed subdirectories, pid/) at
    # start; the directories a submission needs exist from the start.
    install -d -m 0755 "$D$SPOOLDIR" "$D$SPOOLDIR/pid"
    install -d -m 0700 "$D$DATADIR_VAR"
    for q in incoming active deferred hold requeue recycle corrupt defer bounce trace private; do
        install -d -m 0700 "$D$SPOOLDIR/$q"
    done
    install -d -m 01730 "$D$SPOOLDIR/maildrop"
    install -d -m 0710 "$D$SPOOLDIR/public"
    if [ "$root" = yes ] && have_accounts; then
        for q in incoming active deferred hold requeue recycle corrupt defer bounce trace private; do
            chown postern: "$D$SPOOLDIR/$q"     # postern and its own group
        done
        chown postern: "$D$DATADIR_VAR"
        chown postern:postdrop "$D$SPOOLDIR/maildrop" "$D$SPOOLDIR/public"
        chmod 01730 "$D$SPOOLDIR/maildrop"
        chmod 0710 "$D$SPOOLDIR/public"
        chgrp postdrop "$D$SBIN/postdrop" "$D$SBIN/postern"
        chmod 02755 "$D$SBIN/postdrop" "$D$SBIN/postern"
    else
        note "not root or no postern/postdrop accounts: as root, run"
        note "  chown postern:postdrop $SPOOLDIR/maildrop $SPOOLDIR/public;" \
             "chgrp postdrop $SBIN/postdrop $SBIN/postern;" \
             "chmod 2755 $SBIN/postdrop $SBIN/postern"
    fi
    if [ -z "$D" ] && [ "$root" = yes ]; then
        "$SBIN/sendmail" -bi && note "built the alias database (newaliases)"
    else
        note "run newaliases once installed"
    fi
    note "installed under ${D:-/} (PREFIX $PREFIX); start with: systemctl enable --now postern" \
         "(or $SBIN/postern start)"
}

remove_conf() {           # remove_conf NAME: only when unchanged
    dst=$D$SYSCONFDIR/$1
    rm -f "$dst.postern-new"
    if [ -e "$dst" ]; then
        if cmp -s "$GEN/$1" "$dst"; then
            rm -f "$dst"
        else
            note "kept your edited $SYSCONFDIR/$1"
        fi
    fi
}

do_uninstall() {
    generate
    for p in $PROGS; do rm -f "$D$SBIN/$p"; done
    for l in mailq newaliases; do
        [ -L "$D$BIN/$l" ] && rm -f "$D$BIN/$l"
    done
    for d in $DAEMONS; do rm -f "$D$LIBDIR/$d"; done
    rmdir "$D$LIBDIR" 2>/dev/null || true
    for f in main.cf master.cf aliases; do
        rm -f "$D$SHARE/$f"
    done
    remove_conf main.cf
    remove_conf master.cf
    rmdir "$D$SHARE" "$D$SYSCONFDIR" 2>/dev/null || true
    rm -f "$D$SYSTEMDDIR/postern.service"
    rm -f "$D$MAN/man1/postern.1" "$D$MAN/man1/sendmail.1" "$D$MAN/man5/postern.5"
    note "removed; the spool $SPOOLDIR (queued mail) and the accounts were left alone"
}

case "$action" in
install) do_install ;;
uninstall) do_uninstall ;;
*) echo "usage: install.sh install|uninstall" >&2; exit 2 ;;
esac
