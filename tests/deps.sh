#!/usr/bin/env bash
# redis_sync test dependencies.
#
#   bash tests/deps.sh            check (and as root, install) the system packages
#   bash tests/deps.sh --build    also build and install the extension
#   bash tests/deps.sh --check    only report what is missing, exit 1 if anything is
#
# Sourced by run_tests.sh / demo.sh, which call ensure_deps and build_install.
# Logs of apt and make go to $DEPS_LOG (a temp file); they are shown on failure,
# and the compiler's warnings always.

PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
PG_CONFIG=${PG_CONFIG:-$PGBIN/pg_config}
DEPS_PACKAGES="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libhiredis-dev libssl-dev openssl redis-server libipc-run-perl postgresql-$PG_MAJOR-partman"
DEPS_REPO=${DEPS_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

deps_log_init() {
    if [ -z "${DEPS_LOG:-}" ]; then
        DEPS_LOG=$(mktemp /tmp/redis_sync_deps.XXXXXX.log)
    fi
}

# Print the last lines of the log and a pointer to it.
deps_show_log() {
    echo "---- last 60 lines of $DEPS_LOG ----" >&2
    tail -n 60 "$DEPS_LOG" >&2
    echo "---- end of $DEPS_LOG ----" >&2
}

# Echo one word per missing dependency; empty output means all present.
deps_missing() {
    local missing=()
    [ -x "$PGBIN/postgres" ] || missing+=("$PGBIN/postgres")
    if [ -x "$PG_CONFIG" ] && "$PG_CONFIG" --version 2>/dev/null | grep -q "PostgreSQL $PG_MAJOR\."; then
        local pkglib
        pkglib=$("$PG_CONFIG" --pkglibdir)
        [ -x "$pkglib/pgxs/src/test/regress/pg_regress" ] || missing+=("pg_regress")
        [ -x "$pkglib/pgxs/src/test/isolation/pg_isolation_regress" ] || missing+=("pg_isolation_regress")
        [ -f "$pkglib/pgxs/src/test/perl/PostgreSQL/Test/Cluster.pm" ] || missing+=("PostgreSQL::Test::Cluster")
    else
        missing+=("pg_config-$PG_MAJOR")
    fi
    command -v redis-server >/dev/null 2>&1 || missing+=("redis-server")
    command -v redis-cli >/dev/null 2>&1 || missing+=("redis-cli")
    [ -f /usr/include/hiredis/hiredis.h ] || missing+=("hiredis.h")
    [ -f /usr/include/openssl/ssl.h ] || missing+=("openssl/ssl.h")
    command -v openssl >/dev/null 2>&1 || missing+=("openssl")
    perl -MIPC::Run -e 1 >/dev/null 2>&1 || missing+=("perl-IPC::Run")
    command -v prove >/dev/null 2>&1 || missing+=("prove")
    command -v make >/dev/null 2>&1 || missing+=("make")
    command -v gcc >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || missing+=("cc")
    # tests/t/334_partman_retention: pg_partman manages a synced table
    [ -f "$("$PG_CONFIG" --sharedir 2>/dev/null)/extension/pg_partman.control" ] || missing+=("pg_partman")
    # tests/t/199_multi_windows stops a backend at chosen points
    command -v gdb >/dev/null 2>&1 || missing+=("gdb")
    # sql/encoding_locale: a money locale other than C
    locale -a 2>/dev/null | grep -qix 'de_DE.utf8' || missing+=("locale-de_DE.UTF-8")
    echo "${missing[*]}"
}

ensure_deps() {
    deps_log_init
    local missing
    missing=$(deps_missing)
    [ -z "$missing" ] && return 0
    echo "deps: missing: $missing" >&2
    local pkgs="$DEPS_PACKAGES"
    case " $missing " in *" make "*|*" cc "*) pkgs="$pkgs make gcc" ;; esac
    case " $missing " in *" prove "*) pkgs="$pkgs perl" ;; esac
    case " $missing " in *" gdb "*) pkgs="$pkgs gdb" ;; esac
    case " $missing " in *" locale-de_DE.UTF-8 "*) pkgs="$pkgs locales" ;; esac
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: run this once, then retry:" >&2
        echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs" >&2
        return 1
    fi
    echo "deps: installing $pkgs (log: $DEPS_LOG)" >&2
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs; } >>"$DEPS_LOG" 2>&1; then
        echo "deps: apt-get failed" >&2
        deps_show_log
        return 1
    fi
    case " $missing " in
        *" locale-de_DE.UTF-8 "*) localedef -i de_DE -f UTF-8 de_DE.UTF-8 >>"$DEPS_LOG" 2>&1 ;;
    esac
    missing=$(deps_missing)
    if [ -n "$missing" ]; then
        echo "deps: still missing after install: $missing" >&2
        return 1
    fi
}

# True when the installed module, control and SQL files equal the fresh build.
installed_is_current() {
    local pkglib=$1 sharedir=$2 f
    cmp -s "$DEPS_REPO/redis_sync.so" "$pkglib/redis_sync.so" || return 1
    cmp -s "$DEPS_REPO/redis_sync.control" "$sharedir/extension/redis_sync.control" || return 1
    for f in "$DEPS_REPO"/extension/redis_sync--*.sql; do
        [ -f "$f" ] || continue
        cmp -s "$f" "$sharedir/extension/$(basename "$f")" || return 1
    done
    return 0
}

# Build the extension and install it into $PG_CONFIG's server.
build_install() {
    deps_log_init
    echo "build: make PG_CONFIG=$PG_CONFIG (log: $DEPS_LOG)" >&2
    if ! make -C "$DEPS_REPO" PG_CONFIG="$PG_CONFIG" >>"$DEPS_LOG" 2>&1; then
        echo "build: make failed" >&2
        deps_show_log
        return 1
    fi
    # the log is kept out of the way, its warnings are not
    grep -E '(warning|note):' "$DEPS_LOG" >&2 || true
    local pkglib sharedir
    pkglib=$("$PG_CONFIG" --pkglibdir)
    sharedir=$("$PG_CONFIG" --sharedir)
    if [ "$(id -u)" -eq 0 ] || { [ -w "$pkglib" ] && [ -w "$sharedir/extension" ]; }; then
        if ! make -C "$DEPS_REPO" PG_CONFIG="$PG_CONFIG" install >>"$DEPS_LOG" 2>&1; then
            echo "build: make install failed" >&2
            deps_show_log
            return 1
        fi
    elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        if ! sudo -n make -C "$DEPS_REPO" PG_CONFIG="$PG_CONFIG" install >>"$DEPS_LOG" 2>&1; then
            echo "build: sudo -n make install failed" >&2
            deps_show_log
            return 1
        fi
    elif installed_is_current "$pkglib" "$sharedir"; then
        echo "build: $pkglib not writable, but the installed files match this build" >&2
    else
        echo "build: $pkglib is not writable and passwordless sudo is unavailable." >&2
        echo "build: install once by hand, then retry:" >&2
        echo "  sudo make -C $DEPS_REPO PG_CONFIG=$PG_CONFIG install" >&2
        return 1
    fi
    echo "build: installed into $pkglib" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        --check)
            m=$(deps_missing)
            if [ -n "$m" ]; then echo "missing: $m"; exit 1; fi
            echo "all dependencies present"
            ;;
        --build)
            ensure_deps
            build_install
            rm -f "$DEPS_LOG"
            ;;
        "")
            ensure_deps
            echo "all dependencies present"
            ;;
        *)
            echo "usage: $0 [--check|--build]" >&2
            exit 2
            ;;
    esac
fi
