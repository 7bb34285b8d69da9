#!/usr/bin/env bash
# Indent the C sources the way PostgreSQL does (pgindent / pg_bsd_indent).
#
#   bash tools/indent.sh [--check] [FILE...]     (default: src/*.c src/*.h)
#
# Without --check the files are rewritten in place; with --check nothing is
# written and the exit status is 1 when a file would change (its diff is
# printed).  `make indent` and `make indent-check` call this.
#
# Tools: pg_bsd_indent 2.1.1, the indenter PostgreSQL 15's pgindent drives
# (Debian: apt-get install pg-bsd-indent).  If PGINDENT names the pgindent
# script of a PostgreSQL 15 source tree (src/tools/pgindent/pgindent), it is
# used as is, with its pre- and post-processing; otherwise pg_bsd_indent runs
# directly with pgindent's switches, which gives the same layout except for
# pgindent's few clean-ups around it (comments after #else/#endif, blank
# lines at the top of blocks).
#
# The typedef list (pg_bsd_indent must know which words are type names) is
# built at each run from the PostgreSQL server headers (pg_config
# --includedir-server), hiredis's headers and src/: every "} Name;" and
# "typedef ... Name;" / "typedef ... (*Name)(...)" plus a few libc types.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

PG_CONFIG=${PG_CONFIG:-pg_config}
PG_BSD_INDENT=${PG_BSD_INDENT:-pg_bsd_indent}
# pgindent's switches for pg_bsd_indent (PostgreSQL 15)
INDENT_OPTS="-bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0 -di12 -nfc1 -i4 -l79 -lp -lpl -nip -npro -sac -tpg -ts4"

check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(src/*.c src/*.h)

if ! command -v "$PG_BSD_INDENT" >/dev/null 2>&1; then
    echo "indent: $PG_BSD_INDENT not found (Debian: apt-get install pg-bsd-indent)" >&2
    exit 2
fi
ver=$("$PG_BSD_INDENT" --version 2>&1 || true)
case "$ver" in
    *2.1.1*) ;;
    *) echo "indent: $PG_BSD_INDENT reports '$ver'; PostgreSQL 15's layout needs 2.1.1" >&2; exit 2 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/redis_sync_indent.XXXXXX")
trap 'rm -rf "$work"' EXIT

# the typedef list
incdirs=("$("$PG_CONFIG" --includedir-server)" src)
[ -d /usr/include/hiredis ] && incdirs+=(/usr/include/hiredis)
{
    grep -rhoE '^\}[[:space:]]*[A-Za-z_][A-Za-z0-9_]*[[:space:]]*;' --include='*.h' --include='*.c' "${incdirs[@]}" |
        sed -E 's/^\}[[:space:]]*//; s/[[:space:]]*;$//'
    grep -rhE '^typedef[^(]*[[:space:]*]([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*;' --include='*.h' --include='*.c' "${incdirs[@]}" |
        sed -E 's/.*[[:space:]*]([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*;.*/\1/'
    grep -rhE '^typedef[^;]*\([[:space:]]*\*[[:space:]]*[A-Za-z_][A-Za-z0-9_]*[[:space:]]*\)' --include='*.h' --include='*.c' "${incdirs[@]}" |
        sed -E 's/.*\([[:space:]]*\*[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*\).*/\1/'
    printf '%s\n' size_t ssize_t off_t pid_t uid_t gid_t mode_t time_t FILE va_list \
        int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t \
        socklen_t sigjmp_buf jmp_buf fd_set
} | sort -u >"$work/typedefs.list"

rc=0
for f in "${files[@]}"; do
    out=$work/out/$f
    mkdir -p "$(dirname "$out")"
    cp "$f" "$out"
    if [ -n "${PGINDENT:-}" ]; then
        "$PGINDENT" --typedefs="$work/typedefs.list" --indent="$PG_BSD_INDENT" "$out" >/dev/null
    else
        "$PG_BSD_INDENT" $INDENT_OPTS -U"$work/typedefs.list" "$f" "$out.new" 2>"$work/err" || {
            cat "$work/err" >&2; rc=2; continue; }
        mv "$out.new" "$out"
        # pgindent's post-processing: a function's return type alone on its
        # line keeps one space before its stars ("char *", not "char\t   *")
        perl -0pi -e 's/^([A-Za-z_][A-Za-z_0-9 ]*[A-Za-z_0-9])[ \t]+(\*+)$/$1 $2/gm' "$out"
    fi
    if ! cmp -s "$f" "$out"; then
        if [ "$check" = 1 ]; then
            diff -u "$f" "$out" | sed "s|$work/out/||" || true
            rc=$((rc > 1 ? rc : 1))
        else
            cp "$out" "$f"
            echo "indented $f"
        fi
    fi
done
exit "$rc"
