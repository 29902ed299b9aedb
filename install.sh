#!/usr/bin/env bash
# install.sh: install, upgrade or remove missedcall on a FreePBX or plain Asterisk box.
#
#   sudo ./install.sh                      install, or upgrade in place (run it again after an upgrade)
#   sudo ./install.sh --uninstall          remove code, AGI script, link, cron and our dialplan block
#   sudo ./install.sh --uninstall --purge  ... and the configuration, spool and (after confirming) tables
#
# Every step is one function below; every change goes through run / write_file,
# which print it and honour --dry-run. The fiddly text work (our dialplan block,
# the config file, the cron file) is done by missedcall.admin.dialplan and
# missedcall.admin.installer, run from this folder with the system Python, so it is
# unit-tested and available before any virtualenv exists.
#
# Portable to bash 4.2 (CentOS 7 / SNG7) and Debian 12: no empty-array
# expansions under set -u, no ${var,,}, no mapfile.
#
# For tests and packagers: MISSEDCALL_INSTALL_PIP_ARGS adds pip arguments
# (--no-index --find-links DIR, say); MISSEDCALL_INSTALL_PIP names a Python whose
# pip (22.3 or newer) installs into the virtualenv with --python, so that the
# virtualenv is created without its own pip (much faster).
set -euo pipefail

PROG=install.sh
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEFAULT_CONFIG_DIR=/etc/missedcall

PREFIX=       # default /opt/missedcall; --uninstall takes it from install.state
AGI_DIR=      # default astagidir from asterisk.conf; --uninstall takes it from install.state
ASTERISK_ETC= # default /etc/asterisk; --uninstall takes it from install.state
CONFIG_DIR=$DEFAULT_CONFIG_DIR
ROOT=
ASTERISK_USER=
PYTHON=
NO_DIALPLAN=0
DRY_RUN=0
UNINSTALL=0
PURGE=0
FORCE=0
YES=0
SERVICE=0
SERVICE_URL=

DATA_DIR=/var/lib/missedcall
SPOOL_DIR=/var/spool/missedcall
CRON_FILE=/etc/cron.d/missedcall
LINK=/usr/local/bin/missedcall-admin
UNIT_FILE=/etc/systemd/system/missedcall-fastagi.service
FREEPBX_CONF=${MISSEDCALL_FREEPBX_CONF:-/etc/freepbx.conf}

usage() {
    cat <<'EOF'
Usage: sudo ./install.sh [options]

Installs missedcall: the library in its own virtualenv, missed.py in Asterisk's
agi-bin, missedcall-admin on PATH, /etc/missedcall/missedcall.env (only when
absent), the tables, the FreePBX dialplan hook, and a cron entry. Run it again
after an upgrade: it replaces the code and keeps configuration and data.

  --prefix DIR         where the virtualenv goes (default /opt/missedcall)
  --agi-dir DIR        Asterisk's agi-bin (default: astagidir from asterisk.conf,
                       else /var/lib/asterisk/agi-bin)
  --asterisk-etc DIR   Asterisk's configuration folder (default /etc/asterisk)
  --config-dir DIR     missedcall's configuration folder (default /etc/missedcall)
  --asterisk-user NAME the user Asterisk runs as (default: runuser from
                       asterisk.conf, else asterisk)
  --python PATH        the Python 3.9+ to build the virtualenv with
  --root DIR           stage every path under DIR; touch nothing outside it
                       (no database, no Asterisk reload, no doctor run)
  --no-dialplan        leave the dialplan alone
  --service            also run the FastAGI service (systemd unit
                       missedcall-fastagi) and call it first from the dialplan,
                       the AGI script being its fallback (docs/fastagi.md)
  --force              take over a hand-made [ext-queues] h in
                       extensions_override_freepbx.conf (commented out; uninstall
                       restores it)
  --dry-run            print every action, change nothing
  --uninstall          remove what install.sh put in place; keep config and data
  --purge              with --uninstall: also remove config, spool, data and,
                       after confirmation, the tables
  --yes                with --purge: drop the tables without asking
  -h, --help           this text
EOF
}

# --- output and actions -------------------------------------------------------

say() { printf '%s\n' "$*"; }
step() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}
usage_error() {
    printf '%s: %s (see --help)\n' "$PROG" "$*" >&2
    exit 2
}

# run CMD ARGS...: print the command, then run it (or only print it with --dry-run).
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '    would run:'
    else
        printf '    +'
    fi
    printf ' %q' "$@"
    printf '\n'
    if [ "$DRY_RUN" = 0 ]; then
        "$@"
    fi
}

# r PATH: where PATH is under --root.
r() { printf '%s%s' "$ROOT" "$1"; }

# own USER:GROUP PATH: chown when running as root, both exist (under --root the
# Asterisk user may not: check_user said so) and PATH is not so already.
own() {
    local owner=$1 path=$2 user group
    user=${owner%%:*}
    group=${owner#*:}
    if [ "$(id -u)" != 0 ] || ! getent passwd "$user" >/dev/null || ! getent group "$group" >/dev/null; then
        return 0
    fi
    if [ -e "$path" ] && [ "$(stat -c %U:%G "$path")" = "$owner" ]; then
        return 0
    fi
    run chown "$owner" "$path"
}

# write_file DEST MODE USER:GROUP < content: write atomically, unless it is already so.
write_file() {
    local dest=$1 mode=$2 owner=$3 content tmp
    content=$(
        cat
        printf .
    )
    content=${content%.}
    if [ -f "$dest" ] && [ "$(
        cat "$dest"
        printf .
    )" = "$content." ]; then
        note "unchanged: $dest"
        if [ "$(stat -c %a "$dest")" != "${mode#0}" ]; then
            run chmod "$mode" "$dest"
        fi
        own "$owner" "$dest"
        return 0
    fi
    if [ "$DRY_RUN" = 1 ]; then
        note "would write $dest (mode $mode, $owner):"
        printf '%s' "$content" | sed 's/^/      | /'
        return 0
    fi
    tmp=$(mktemp "$(dirname "$dest")/.missedcall.XXXXXX")
    printf '%s' "$content" >"$tmp"
    chmod "$mode" "$tmp"
    own "$owner" "$tmp" >/dev/null
    mv -f "$tmp" "$dest"
    note "wrote $dest (mode $mode, owner $(stat -c %U:%G "$dest"))"
}

# make_dir DIR MODE USER:GROUP
make_dir() {
    local dir=$1 mode=$2 owner=$3
    if [ ! -d "$dir" ]; then
        run mkdir -p "$dir"
        run chmod "$mode" "$dir"
    elif [ "$(stat -c %a "$dir")" != "${mode#0}" ]; then
        run chmod "$mode" "$dir"
    fi
    own "$owner" "$dir"
}

# helper MODULE ARGS...: our Python helpers, from this folder, with the system Python.
helper() {
    (cd "$SRC" && "$PYTHON" -s -B -m "$@")
}

# --- arguments -----------------------------------------------------------------

parse_args() {
    local option value
    while [ $# -gt 0 ]; do
        option=$1
        value=
        case $option in
        --*=*)
            value=${option#*=}
            option=${option%%=*}
            ;;
        esac
        case $option in
        --prefix | --agi-dir | --asterisk-etc | --config-dir | --root | --asterisk-user | --python)
            if [ -z "$value" ]; then
                [ $# -ge 2 ] || usage_error "$option needs a value"
                value=$2
                shift
            fi
            case $option in
            --prefix) PREFIX=$value ;;
            --agi-dir) AGI_DIR=$value ;;
            --asterisk-etc) ASTERISK_ETC=$value ;;
            --config-dir) CONFIG_DIR=$value ;;
            --root) ROOT=$value ;;
            --asterisk-user) ASTERISK_USER=$value ;;
            --python) PYTHON=$value ;;
            esac
            ;;
        --no-dialplan) NO_DIALPLAN=1 ;;
        --service) SERVICE=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        --force) FORCE=1 ;;
        --yes) YES=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) usage_error "unknown option $option" ;;
        esac
        shift
    done
    if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
        usage_error "--purge goes with --uninstall"
    fi
    if [ "$SERVICE" = 1 ] && [ "$UNINSTALL" = 1 ]; then
        usage_error "--service goes with an install (--uninstall removes the service too)"
    fi
    local path
    for path in "$CONFIG_DIR" ${PREFIX:+"$PREFIX"} ${ASTERISK_ETC:+"$ASTERISK_ETC"} ${AGI_DIR:+"$AGI_DIR"}; do
        case $path in
        /*) ;;
        *) usage_error "$path: paths must be absolute" ;;
        esac
    done
    if [ -n "$ROOT" ]; then
        case $ROOT in
        /*) ;;
        *) ROOT=$(pwd)/$ROOT ;;
        esac
        ROOT=${ROOT%/}
        [ -n "$ROOT" ] || usage_error "--root / would be the real system; leave --root out instead"
    fi
    CONFIG_DIR=${CONFIG_DIR%/}
    STATE_FILE=$CONFIG_DIR/install.state
    if [ "$UNINSTALL" = 1 ]; then
        # Remove what was installed where it was installed, unless told otherwise.
        PREFIX=${PREFIX:-$(state_value prefix)}
        ASTERISK_ETC=${ASTERISK_ETC:-$(state_value asterisk_etc)}
        AGI_DIR=${AGI_DIR:-$(state_value agi_dir)}
    fi
    PREFIX=${PREFIX:-/opt/missedcall}
    PREFIX=${PREFIX%/}
    ASTERISK_ETC=${ASTERISK_ETC:-/etc/asterisk}
    ASTERISK_ETC=${ASTERISK_ETC%/}
    case $PREFIX in
    / | /usr | /usr/local | /opt | /etc | /var) usage_error "--prefix $PREFIX is not a folder of its own" ;;
    esac
    VENV=$PREFIX/venv
    CONFIG_FILE=$CONFIG_DIR/missedcall.env
    BACKUP_DIR=$CONFIG_DIR/backups
    OVERRIDE=$ASTERISK_ETC/extensions_override_freepbx.conf
    GENERATED=$ASTERISK_ETC/extensions_additional.conf
}

# state_value KEY: a value from install.state (empty when there is none).
state_value() {
    sed -n "s/^$1=//p" "$(r "$STATE_FILE")" 2>/dev/null | head -n 1 || true
}

# asterisk_conf KEY: a value from [directories]/[options] of asterisk.conf ("key => value").
asterisk_conf() {
    local file
    file=$(r "$ASTERISK_ETC/asterisk.conf")
    [ -r "$file" ] || return 0
    sed -n "s/^[[:space:]]*$1[[:space:]]*=>*[[:space:]]*\\([^;[:space:]]*\\).*/\\1/p" "$file" | head -n 1
}

# --- checks: each refuses with one line, before anything changes ------------------

check_root() {
    if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
        die "run me as root: sudo ./install.sh (or stage into a folder with --root DIR)"
    fi
}

check_source() {
    local file
    for file in missedcall/__init__.py agi-bin/missed.py pyproject.toml; do
        [ -f "$SRC/$file" ] ||
            die "$SRC/$file is missing: copy the whole missedcall folder to the PBX and run install.sh from it"
    done
}

check_python() {
    local candidate found="" version
    # The system's own first: a python3 from root's PATH (pyenv, say) may live where Asterisk cannot go.
    local candidates="/usr/bin/python3 python3 python3.14 python3.13 python3.12 python3.11 python3.10 python3.9"
    if [ -n "$PYTHON" ]; then
        candidates=$PYTHON
    fi
    for candidate in $candidates; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        version=$("$candidate" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
            PYTHON=$(command -v "$candidate")
            PYTHON_VERSION=$version
            return 0
        fi
        found=${found:-"Python $version ($(command -v "$candidate"))"}
    done
    if [ -n "$found" ]; then
        die "found $found, but missedcall needs Python 3.9 or newer: install one (RHEL 8/9: dnf install python3.11; SNG7/CentOS 7 ship only 3.6: build 3.9 from python.org's source with make altinstall, as 3.10 and newer need OpenSSL 1.1.1; Debian: apt-get install python3) and re-run with --python /path/to/python3.X"
    fi
    die "no Python 3 found${PYTHON:+ at $PYTHON}: install Python 3.9 or newer (Debian: apt-get install python3; RHEL: dnf install python3) or pass --python PATH"
}

check_venv_module() {
    local modules="import venv, ensurepip"
    if [ -n "${MISSEDCALL_INSTALL_PIP:-}" ]; then
        modules="import venv" # the virtualenv gets no pip of its own
    fi
    "$PYTHON" -c "$modules" 2>/dev/null ||
        die "$PYTHON has no working venv module: install it (Debian/Ubuntu: apt-get install python3-venv, or python$(echo "$PYTHON_VERSION" | cut -d. -f1,2)-venv; RHEL/CentOS: yum install python3-libs or the python3X package you use) and re-run"
}

check_asterisk_dirs() {
    [ -d "$(r "$ASTERISK_ETC")" ] ||
        die "no Asterisk config folder at $(r "$ASTERISK_ETC"): is Asterisk installed? If its configuration lives elsewhere, pass --asterisk-etc DIR"
    if [ -z "$AGI_DIR" ]; then
        AGI_DIR=$(asterisk_conf astagidir)
        AGI_DIR=${AGI_DIR:-/var/lib/asterisk/agi-bin}
    fi
    [ -d "$(r "$AGI_DIR")" ] ||
        die "no Asterisk agi-bin folder at $(r "$AGI_DIR"): is Asterisk installed? If its AGI scripts live elsewhere (astagidir in asterisk.conf), pass --agi-dir DIR"
}

check_user() {
    if [ -z "$ASTERISK_USER" ]; then
        ASTERISK_USER=$(asterisk_conf runuser)
        ASTERISK_USER=${ASTERISK_USER:-asterisk}
    fi
    if getent passwd "$ASTERISK_USER" >/dev/null; then
        ASTERISK_GROUP=$(id -gn "$ASTERISK_USER")
        return 0
    fi
    ASTERISK_GROUP=$ASTERISK_USER
    if [ -n "$ROOT" ]; then
        note "user $ASTERISK_USER does not exist here: owner changes are skipped (files stay owned by $(id -un))"
        return 0
    fi
    die "no user $ASTERISK_USER: is Asterisk installed? If it runs as another user, pass --asterisk-user NAME"
}

# The AGI runs as the Asterisk user, with the virtualenv's python: the interpreter it
# links to must be reachable by that user (not under /root, for instance).
check_python_for_user() {
    if [ -n "$ROOT" ] || [ "$(id -u)" != 0 ] || ! getent passwd "$ASTERISK_USER" >/dev/null ||
        ! command -v runuser >/dev/null 2>&1; then
        return 0
    fi
    runuser -u "$ASTERISK_USER" -- "$PYTHON" -c pass 2>/dev/null ||
        die "user $ASTERISK_USER cannot run $PYTHON (is it under /root?), so the AGI could not either: pass --python with a system Python 3.9+ such as /usr/bin/python3"
}

check_link() {
    local link
    link=$(r "$LINK")
    if [ -e "$link" ] && [ ! -L "$link" ]; then
        die "$link exists and is not a link: remove it (or move it away) and re-run"
    fi
}

# Which dialplan work there is: freepbx, pending (FreePBX without queues yet), plain or none.
detect_dialplan() {
    if [ "$NO_DIALPLAN" = 1 ]; then
        DIALPLAN=none
    elif [ -f "$(r "$FREEPBX_CONF")" ] && [ -f "$(r "$GENERATED")" ] &&
        grep -q '^[[:space:]]*\[ext-queues\]' "$(r "$GENERATED")"; then
        DIALPLAN=freepbx
    elif [ -f "$(r "$FREEPBX_CONF")" ]; then
        DIALPLAN=pending
    else
        DIALPLAN=plain
    fi
}

check_dialplan() {
    local force=""
    if [ "$FORCE" = 1 ]; then force=--force; fi
    if [ "$DIALPLAN" = freepbx ]; then
        helper missedcall.admin.dialplan check --file "$(r "$OVERRIDE")" --generated "$(r "$GENERATED")" $force |
            sed 's/^/    /' || exit 1
    fi
}

preflight() {
    step "checks"
    check_root
    check_source
    check_python
    note "Python $PYTHON_VERSION ($PYTHON)"
    if [ "$UNINSTALL" = 1 ]; then
        if [ "$PURGE" = 1 ] && [ "$YES" = 0 ] && [ -z "$ROOT" ] && [ "$DRY_RUN" = 0 ] && [ ! -t 0 ]; then
            die "--purge drops the tables only after you confirm: run it in a terminal, or add --yes"
        fi
        return 0
    fi
    check_venv_module
    check_asterisk_dirs
    check_user
    check_python_for_user
    check_link
    detect_dialplan
    case $DIALPLAN in
    freepbx) note "FreePBX ($(r "$FREEPBX_CONF")) with queues: the [ext-queues] h hook goes in $(r "$OVERRIDE")" ;;
    pending) note "FreePBX without queues yet: no dialplan hook until a queue exists" ;;
    plain) note "plain Asterisk (no $(r "$FREEPBX_CONF")): the dialplan is yours to edit; install.sh prints what to add" ;;
    none) note "--no-dialplan: the dialplan is left alone" ;;
    esac
    check_dialplan
    if [ "$SERVICE" = 1 ]; then
        SERVICE_URL=$(helper missedcall.admin.installer agi-url --config "$(r "$CONFIG_FILE")") ||
            die "MISSEDCALL_FASTAGI_LISTEN in $(r "$CONFIG_FILE") is not host:port: fix it and re-run"
        note "FastAGI service at $SERVICE_URL, the AGI script as its fallback"
    fi
}

# --- install steps ----------------------------------------------------------------

install_code() {
    step "code: virtualenv $(r "$VENV")"
    local venv want build
    venv=$(r "$VENV")
    want=$(helper missedcall.admin.installer source-hash "$SRC")
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -I -c 'import missedcall, pymysql, dotenv, phonenumbers' 2>/dev/null &&
        [ "$(cat "$venv/.missedcall-source" 2>/dev/null)" = "$want" ]; then
        note "already holds this code (source $(printf '%s' "$want" | cut -c1-12)); nothing to do"
        return 0
    fi
    make_dir "$(r "$PREFIX")" 0755 root:root
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -I -c 'import sys' 2>/dev/null; then
        if [ -n "${MISSEDCALL_INSTALL_PIP:-}" ]; then
            run "$PYTHON" -m venv --clear --without-pip "$venv"
        else
            run "$PYTHON" -m venv --clear "$venv"
        fi
    fi
    local pip_cmd=("$venv/bin/python" -m pip)
    if [ -n "${MISSEDCALL_INSTALL_PIP:-}" ]; then
        pip_cmd=("$MISSEDCALL_INSTALL_PIP" -m pip --python "$venv/bin/python")
    fi
    if [ "$DRY_RUN" = 1 ]; then
        note "would copy the package sources to a temporary folder and run:"
        note "  ${pip_cmd[*]} install --upgrade ${MISSEDCALL_INSTALL_PIP_ARGS:-}<copy of $SRC>"
        return 0
    fi
    # pip builds in the source folder; a copy keeps the admin's folder clean (and may be read-only).
    build=$(mktemp -d)
    TO_CLEAN=$build
    local extra="" file
    for file in setup.py README.md LICENSE MANIFEST.in; do
        if [ -f "$SRC/$file" ]; then extra="$extra $file"; fi
    done
    # shellcheck disable=SC2086 # $extra is a list of plain file names
    (cd "$SRC" && tar --exclude=__pycache__ -cf - missedcall pyproject.toml $extra) | tar -C "$build" -xf -
    # shellcheck disable=SC2086 # MISSEDCALL_INSTALL_PIP_ARGS is a word list on purpose
    run "${pip_cmd[@]}" install --quiet --disable-pip-version-check --no-input --upgrade \
        ${MISSEDCALL_INSTALL_PIP_ARGS:-} "$build" ||
        die "pip could not install missedcall (above): it needs PyPI for the libraries, or MISSEDCALL_INSTALL_PIP_ARGS='--no-index --find-links DIR'"
    rm -rf "$build"
    TO_CLEAN=
    "$venv/bin/python" -I -c 'import missedcall, pymysql, dotenv, phonenumbers' ||
        die "the virtualenv $venv cannot import missedcall and its libraries after pip install (see above)"
    printf '%s\n' "$want" >"$venv/.missedcall-source"
    note "installed missedcall $("$venv/bin/python" -I -c 'import missedcall; print(missedcall.__version__)')"
}

install_agi() {
    step "AGI script: $(r "$AGI_DIR")/missed.py"
    {
        # -IS: no site and no .pth files at every hang-up; missed.py adds the venv's packages itself.
        printf '#!%s -IS\n' "$VENV/bin/python"
        if [ "$CONFIG_DIR" != "$DEFAULT_CONFIG_DIR" ]; then
            printf 'import os  # install.sh: this installation keeps its configuration in %s\n' "$CONFIG_DIR"
            printf 'os.environ.setdefault("MISSEDCALL_CONFIG", "%s")\n' "$CONFIG_FILE"
        fi
        sed 1d "$SRC/agi-bin/missed.py"
    } | write_file "$(r "$AGI_DIR")/missed.py" 0755 "$ASTERISK_USER:$ASTERISK_GROUP"
}

install_link() {
    step "command: $(r "$LINK") -> $VENV/bin/missedcall-admin"
    local link
    link=$(r "$LINK")
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$VENV/bin/missedcall-admin" ]; then
        note "unchanged: $link"
        return 0
    fi
    make_dir "$(dirname "$link")" 0755 root:root
    run ln -sfn "$VENV/bin/missedcall-admin" "$link"
}

install_config() {
    step "configuration: $(r "$CONFIG_FILE")"
    make_dir "$(r "$CONFIG_DIR")" 0750 "root:$ASTERISK_GROUP"
    if [ -e "$(r "$CONFIG_FILE")" ]; then
        note "kept the existing $(r "$CONFIG_FILE") (install.sh never overwrites it)"
        # ... but the AGI and cron, running as the Asterisk user, must be able to read it.
        if [ -z "$ROOT" ] && [ "$(id -u)" = 0 ] && getent passwd "$ASTERISK_USER" >/dev/null &&
            command -v runuser >/dev/null 2>&1 && ! runuser -u "$ASTERISK_USER" -- test -r "$CONFIG_FILE"; then
            note "$ASTERISK_USER cannot read it: giving it to group $ASTERISK_GROUP, mode 0640"
            run chgrp "$ASTERISK_GROUP" "$CONFIG_FILE"
            run chmod 0640 "$CONFIG_FILE"
        fi
    else
        helper missedcall.admin.installer env | write_file "$(r "$CONFIG_FILE")" 0640 "root:$ASTERISK_GROUP"
    fi
    make_dir "$(r "$DATA_DIR")" 0750 "$ASTERISK_USER:$ASTERISK_GROUP"
    make_dir "$(r "$SPOOL_DIR")" 0750 "$ASTERISK_USER:$ASTERISK_GROUP"
    helper missedcall.admin.installer state prefix="$PREFIX" agi_dir="$AGI_DIR" asterisk_etc="$ASTERISK_ETC" config_dir="$CONFIG_DIR" \
        data_dir="$DATA_DIR" cron_file="$CRON_FILE" link="$LINK" asterisk_user="$ASTERISK_USER" \
        dialplan="$DIALPLAN" service="$SERVICE_URL" unit_file="$UNIT_FILE" | write_file "$(r "$STATE_FILE")" 0644 root:root
}

admin() {
    run env MISSEDCALL_CONFIG="$CONFIG_FILE" "$VENV/bin/missedcall-admin" "$@"
}

install_tables() {
    step "tables"
    if [ -n "$ROOT" ]; then
        note "skipped under --root (no database is touched): run missedcall-admin init on the target"
        return 0
    fi
    admin init | sed 's/^/    /' ||
        die "missedcall-admin init failed (above): fix the database settings in $CONFIG_FILE and re-run"
    # SQLite lives in our data folder: the AGI and cron, running as $ASTERISK_USER, write there.
    if [ "$DRY_RUN" = 0 ] && getent passwd "$ASTERISK_USER" >/dev/null &&
        [ -n "$(find "$DATA_DIR" ! -user "$ASTERISK_USER" 2>/dev/null)" ]; then
        run chown -R "$ASTERISK_USER:$ASTERISK_GROUP" "$DATA_DIR"
    fi
}

install_dialplan() {
    local force="" dry=""
    if [ "$FORCE" = 1 ]; then force=--force; fi
    if [ "$DRY_RUN" = 1 ]; then dry=--dry-run; fi
    case $DIALPLAN in
    freepbx)
        step "dialplan: $(r "$OVERRIDE")"
        helper missedcall.admin.dialplan install --file "$(r "$OVERRIDE")" --generated "$(r "$GENERATED")" \
            --backup-dir "$(r "$BACKUP_DIR")" --service "$SERVICE_URL" $force $dry | sed 's/^/    /'
        ;;
    pending)
        step "dialplan"
        note "FreePBX has no [ext-queues] in $(r "$GENERATED") yet (no queues):"
        note "create a queue, Apply Config, then run ./install.sh again to add the hook."
        note "(the queue_log sweeper catches missed calls meanwhile)"
        ;;
    plain)
        step "dialplan: plain Asterisk, nothing written; add this to your dialplan (README: Plain Asterisk)"
        helper missedcall.admin.dialplan snippet | sed 's/^/    | /'
        if [ -n "$SERVICE_URL" ]; then
            note "with the service: in [missedcall-hangup], call AGI($SERVICE_URL,\${ARG1}) first and"
            note "AGI(missed.py,\${ARG1}) only when \${AGISTATUS} is FAILURE (docs/fastagi.md)"
        fi
        ;;
    none)
        step "dialplan: left alone (--no-dialplan)"
        ;;
    esac
}

# systemctl when systemd runs the box; under --root, --dry-run or without systemd, only a note.
systemd_runs() {
    [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

install_service() {
    step "FastAGI service: $(r "$UNIT_FILE") ($SERVICE_URL)"
    make_dir "$(dirname "$(r "$UNIT_FILE")")" 0755 root:root
    helper missedcall.admin.installer unit --prefix "$PREFIX" --user "$ASTERISK_USER" --config "$CONFIG_FILE" |
        write_file "$(r "$UNIT_FILE")" 0644 root:root
    if systemd_runs; then
        run systemctl daemon-reload
        run systemctl enable missedcall-fastagi.service
        run systemctl restart missedcall-fastagi.service
    else
        note "systemd does not run here$([ -n "$ROOT" ] && echo " (--root)"): enable it on the box with"
        note "  systemctl daemon-reload && systemctl enable --now missedcall-fastagi"
    fi
}

# The service goes after the dialplan stopped calling it (a plain install.sh, or --uninstall).
remove_service() {
    local unit
    unit=$(r "$UNIT_FILE")
    if [ ! -e "$unit" ]; then
        return 0
    fi
    step "FastAGI service: $unit"
    if systemd_runs; then
        run systemctl disable --now missedcall-fastagi.service || true
    fi
    run rm -f "$unit"
    if systemd_runs; then
        run systemctl daemon-reload
    fi
}

install_cron() {
    step "cron: $(r "$CRON_FILE")"
    make_dir "$(dirname "$(r "$CRON_FILE")")" 0755 root:root
    helper missedcall.admin.installer cron --prefix "$PREFIX" --user "$ASTERISK_USER" --data-dir "$DATA_DIR" \
        --config "$CONFIG_FILE" --read-config "$(r "$CONFIG_FILE")" | write_file "$(r "$CRON_FILE")" 0644 root:root
}

find_asterisk() {
    ASTERISK_BIN=$(PATH=$PATH:/usr/sbin:/usr/local/sbin:/sbin command -v asterisk 2>/dev/null || true)
    [ -n "$ASTERISK_BIN" ] && "$ASTERISK_BIN" -rx 'core show version' 2>/dev/null | grep -q '^Asterisk'
}

reload_asterisk() {
    step "reload"
    if [ -n "$ROOT" ]; then
        note "skipped under --root (no service is touched)"
        return 0
    fi
    if ! find_asterisk; then
        note "Asterisk is not running: the dialplan takes effect when it starts"
        return 0
    fi
    run "$ASTERISK_BIN" -rx 'dialplan reload' | sed 's/^/    /'
    if [ "$DRY_RUN" = 1 ] || [ "$UNINSTALL" = 1 ]; then
        return 0
    fi
    if [ "$DIALPLAN" = freepbx ]; then
        if "$ASTERISK_BIN" -rx 'dialplan show h@ext-queues' | grep -q 'AGI(missed.py'; then
            note "live: Asterisk's h@ext-queues now runs AGI(missed.py,\${QUEUENUM})"
            note "(\"Unable to register extension 'h' ... already in use\" in Asterisk's log at each reload is expected)"
        else
            note "WARNING: Asterisk's h@ext-queues does not run missed.py after the reload;"
            note "check that extensions.conf includes extensions_override_freepbx.conf (doctor says more)"
        fi
    fi
}

run_doctor() {
    step "doctor"
    if [ -n "$ROOT" ] || [ "$DRY_RUN" = 1 ]; then
        note "skipped ($([ -n "$ROOT" ] && echo "--root" || echo "--dry-run")): run missedcall-admin doctor on the box"
        return 0
    fi
    if MISSEDCALL_CONFIG=$CONFIG_FILE "$VENV/bin/missedcall-admin" doctor | sed 's/^/    /'; then
        return 0
    fi
    say ""
    die "installed, but doctor found FAIL lines (above): fix them, then run: missedcall-admin doctor"
}

do_install() {
    install_code
    install_agi
    install_link
    install_config
    install_tables
    if [ "$SERVICE" = 1 ]; then
        install_service # listening before the dialplan calls it
    fi
    install_dialplan
    if [ "$SERVICE" = 0 ]; then
        remove_service # a plain install.sh goes back to the process hook alone
    fi
    install_cron
    reload_asterisk
    run_doctor
    say ""
    if [ "$DRY_RUN" = 1 ]; then
        say "dry run: nothing was changed."
        return 0
    fi
    say "missedcall is installed. Next, say who gets the mails and send yourself a test:"
    say "  missedcall-admin recipients add 600 ops@example.com     (600 = your queue number)"
    say "  missedcall-admin test 600"
}

# --- uninstall steps -------------------------------------------------------------------

remove_dialplan() {
    local dry=""
    if [ "$DRY_RUN" = 1 ]; then dry=--dry-run; fi
    step "dialplan: $(r "$OVERRIDE")"
    if [ ! -f "$(r "$OVERRIDE")" ]; then
        note "no such file; nothing to remove"
        return 0
    fi
    helper missedcall.admin.dialplan uninstall --file "$(r "$OVERRIDE")" --backup-dir "$(r "$BACKUP_DIR")" $dry |
        sed 's/^/    /'
}

remove_file() {
    local path=$1
    if [ -e "$path" ] || [ -L "$path" ]; then
        run rm -f "$path"
    else
        note "already gone: $path"
    fi
}

remove_pieces() {
    local agi link
    step "cron, AGI script, command"
    remove_file "$(r "$CRON_FILE")"
    agi=$(r "${AGI_DIR:-/var/lib/asterisk/agi-bin}")/missed.py
    if [ -f "$agi" ] && ! grep -q missedcall "$agi"; then
        note "left $agi alone: it is not missedcall's"
    else
        remove_file "$agi"
    fi
    link=$(r "$LINK")
    if [ -L "$link" ] && [ "$(readlink "$link")" != "$VENV/bin/missedcall-admin" ]; then
        note "left $link alone: it points elsewhere ($(readlink "$link"))"
    elif [ -e "$link" ] && [ ! -L "$link" ]; then
        note "left $link alone: it is not our link"
    else
        remove_file "$link"
    fi
}

drop_tables() {
    local venv where answer
    step "tables"
    if [ "$PURGE" = 0 ]; then
        note "kept (recipients and call history stay; --uninstall --purge removes them)"
        return 0
    fi
    if [ -n "$ROOT" ]; then
        note "kept: --root touches no database"
        return 0
    fi
    venv=$(r "$VENV")
    if [ ! -x "$venv/bin/python" ]; then
        note "kept: the code is already gone; to drop them by hand: SHOW TABLES LIKE 'missedcall%'; then DROP TABLE ..."
        return 0
    fi
    if ! where=$(MISSEDCALL_CONFIG=$CONFIG_FILE "$venv/bin/python" -I -m missedcall.admin.installer drop-tables --describe); then
        note "kept the tables: the database is not reachable with $CONFIG_FILE (above)"
        return 0
    fi
    case $where in
    *": no missedcall tables")
        note "none to drop ($where)"
        return 0
        ;;
    esac
    if [ "$YES" = 0 ]; then
        if [ ! -t 0 ]; then
            note "kept the tables in $where: nobody to confirm (no terminal); add --yes to drop them"
            return 0
        fi
        printf '    Drop these tables (%s)?\n' "$where"
        printf '    All recipients and call history are lost. Type yes to drop them: '
        read -r answer || answer=
        if [ "$answer" != yes ]; then
            note "kept the tables"
            return 0
        fi
    fi
    run env MISSEDCALL_CONFIG="$CONFIG_FILE" "$venv/bin/python" -I -m missedcall.admin.installer drop-tables
}

remove_code() {
    local prefix
    prefix=$(r "$PREFIX")
    step "code: $(r "$VENV")"
    if [ -d "$(r "$VENV")" ]; then
        run rm -rf "$(r "$VENV")"
    else
        note "already gone: $(r "$VENV")"
    fi
    if [ -d "$prefix" ] && [ -z "$(ls -A "$prefix")" ]; then
        run rmdir "$prefix"
    fi
    remove_file "$(r "$STATE_FILE")"
}

purge_files() {
    local dir
    step "configuration and data"
    # Copies the product derived from the configuration (the hook's parsed-settings cache, FreePBX's From
    # address, this host's): ours, not the admin's, and they hold what the file holds, so they go with the code.
    local derived
    for derived in "$CONFIG_DIR/.$(basename "$CONFIG_FILE").parsed" "$CONFIG_DIR/freepbx-from" "$CONFIG_DIR/host-from"; do
        if [ -e "$(r "$derived")" ] && [ "$PURGE" = 0 ]; then
            run rm -f "$(r "$derived")"
        fi
    done
    if [ "$PURGE" = 0 ]; then
        note "kept $(r "$CONFIG_FILE"), $(r "$SPOOL_DIR") and $(r "$DATA_DIR") (--purge removes them)"
        return 0
    fi
    for dir in "$CONFIG_DIR" "$SPOOL_DIR" "$DATA_DIR"; do
        if [ -e "$(r "$dir")" ]; then
            run rm -rf "$(r "$dir")"
        else
            note "already gone: $(r "$dir")"
        fi
    done
}

do_uninstall() {
    AGI_DIR=${AGI_DIR:-$(asterisk_conf astagidir)}
    DIALPLAN=none
    UNIT_FILE=$(state_value unit_file)
    UNIT_FILE=${UNIT_FILE:-/etc/systemd/system/missedcall-fastagi.service}
    remove_dialplan
    reload_asterisk
    remove_service
    remove_pieces
    drop_tables
    remove_code
    purge_files
    say ""
    if [ "$DRY_RUN" = 1 ]; then
        say "dry run: nothing was changed."
    elif [ "$PURGE" = 1 ]; then
        say "missedcall is removed."
    else
        say "missedcall is removed; its configuration and data are kept (--uninstall --purge removes them)."
    fi
}

TO_CLEAN=
cleanup() {
    if [ -n "$TO_CLEAN" ]; then
        rm -rf "$TO_CLEAN"
    fi
}
trap cleanup EXIT

main() {
    parse_args "$@"
    umask 022
    preflight
    if [ -n "$ROOT" ] && [ ! -d "$ROOT" ] && [ "$DRY_RUN" = 0 ]; then
        mkdir -p "$ROOT"
    fi
    if [ "$UNINSTALL" = 1 ]; then
        do_uninstall
    else
        do_install
    fi
}

main "$@"
