#!/usr/bin/env bash
# Run the redis_sync test suites against a private PostgreSQL + Redis sandbox.
#
#   bash tests/run_tests.sh [regress] [isolation] [tap] [demo] [installcheck] [readme]
#                                                    (default: all six)
#
# readme: the fenced ```sql blocks of README.md, in order, each run with
# psql -v ON_ERROR_STOP=1 against a fresh sandbox whose worker database is
# "app" (as in the quick start); blocks marked ```sql norun are skipped
# (tests/readme_blocks.pl extracts them).
#
# installcheck: `make installcheck` twice in a row against a fresh sandbox
# server set up as the README says (preloaded, a database "regression"), from a copy of the source tree
# owned by the run user; its TAP stage runs INSTALLCHECK_TAP (default
# tests/t/001_unreachable.pl; the full TAP set is the "tap" suite).
#
# The last line is "N passed, M failed", counting individual tests: each
# pg_regress test (regress), each spec (isolation), each TAP assertion (ok /
# not ok; a TAP file that dies or exits non-zero without a failed assertion
# counts as one failed test more), the demo as one test, each of the two
# `make installcheck` runs as one test, and each SQL block of README.md
# (readme).  The exit status is non-zero when any test or suite failed.
#
# Environment: PGBIN (default /usr/lib/postgresql/15/bin), TAP_TESTS to pick TAP
# files (e.g. TAP_TESTS=026_standby.pl), KEEP_TMP=1 to keep
# the temp dir even on success, SKIP_BUILD=1 to skip make/make install.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/deps.sh
. "$REPO/tests/deps.sh"
export PATH="$PGBIN:$PATH"

SUITES=("$@")
[ ${#SUITES[@]} -eq 0 ] && SUITES=(regress isolation tap demo installcheck readme)
for s in "${SUITES[@]}"; do
    case "$s" in regress|isolation|tap|demo|installcheck|readme) ;; *) echo "unknown suite: $s (regress|isolation|tap|demo|installcheck|readme)" >&2; exit 2 ;; esac
done

if [ "$(id -u)" -eq 0 ]; then RUN_USER=postgres; else RUN_USER=$(id -un); fi
export RUN_USER

ensure_deps
[ "${SKIP_BUILD:-0}" = 1 ] || build_install

PKGLIB=$("$PG_CONFIG" --pkglibdir)
PG_REGRESS=$PKGLIB/pgxs/src/test/regress/pg_regress
PG_ISOLATION_REGRESS=$PKGLIB/pgxs/src/test/isolation/pg_isolation_regress
PG_PERL=$PKGLIB/pgxs/src/test/perl

TMP=$(mktemp -d "${TMPDIR:-/tmp}/redis_sync_test.XXXXXX")
chmod 755 "$TMP"
[ "$(id -u)" -eq 0 ] && chown "$RUN_USER:" "$TMP"
SANDBOX=$TMP/sandbox
FAILED=0            # individual tests
PASSED=0
SUITES_FAILED=0
FAILED_NAMES=()
RECAP=""

as_run_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$RUN_USER" -- "$@"
    else
        "$@"
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    bash "$REPO/tests/sandbox.sh" stop "$SANDBOX" >/dev/null 2>&1 || true
    bash "$REPO/tests/sandbox.sh" stop "$TMP/ic_sandbox" >/dev/null 2>&1 || true
    bash "$REPO/tests/sandbox.sh" stop "$TMP/readme_sandbox" >/dev/null 2>&1 || true
    if [ "$FAILED" -eq 0 ] && [ "$SUITES_FAILED" -eq 0 ] && [ "$rc" -eq 0 ] && [ "${KEEP_TMP:-0}" != 1 ]; then
        rm -rf "$TMP"
        rm -f "${DEPS_LOG:-}"
    else
        echo "kept $TMP for inspection" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

suite_list() { make -s -C "$REPO" PG_CONFIG="$PG_CONFIG" "print-$1" 2>/dev/null | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; }

show_pg_log() {
    echo "---- tail of $SANDBOX/postgres.log ----"
    tail -n 50 "$SANDBOX/postgres.log" 2>/dev/null || true
    echo "---- tail of $SANDBOX/redis.log ----"
    tail -n 10 "$SANDBOX/redis.log" 2>/dev/null || true
}

# count NPASS NFAIL: individual tests of a suite
count() { PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); }
# pass SUITE / fail SUITE [NFAILED]: the suite's verdict (its tests are
# counted apart; a suite failing with no failed test counted, e.g. its server
# did not start, counts as one failed test)
pass() { echo "== $1: PASSED"; }
fail() {
    SUITES_FAILED=$((SUITES_FAILED + 1)); FAILED_NAMES+=("$1"); echo "== $1: FAILED"
    [ "${2:-0}" -gt 0 ] || FAILED=$((FAILED + 1))
}

# count_pg_regress LOG: "test NAME ... ok" / "... FAILED" lines of
# pg_regress and pg_isolation_regress (PostgreSQL 15); sets NOK and NBAD
count_pg_regress() {
    NOK=0 NBAD=0
    [ -f "$1" ] || return 0     # no log: the suite's verdict counts
    NOK=$(grep -cE '\.\.\. +ok( |$)' "$1" || true)
    NBAD=$(grep -cE '\.\.\. +(FAILED|failed)' "$1" || true)
    count "$NOK" "$NBAD"
}

need_sandbox() {
    [ -f "$SANDBOX/env" ] && return 0
    bash "$REPO/tests/sandbox.sh" start "$SANDBOX" regression || return 1
    # shellcheck disable=SC1091
    . "$SANDBOX/env"
}

run_regress() {
    local tests
    tests=$(suite_list REGRESS)
    if [ -z "$tests" ]; then echo "== regress: no tests listed, skipped"; return; fi
    if ! need_sandbox; then show_pg_log; fail regress; return; fi
    echo "== regress: $tests"
    # shellcheck disable=SC2086
    if "$PG_REGRESS" --inputdir="$REPO" --outputdir="$TMP/regress" --bindir="$PGBIN" \
        --use-existing --dbname=regression \
        --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" $tests 2>&1 | tee "$TMP/regress.log"; then
        count_pg_regress "$TMP/regress.log"
        pass regress
    else
        count_pg_regress "$TMP/regress.log"
        [ -f "$TMP/regress/regression.diffs" ] && cat "$TMP/regress/regression.diffs"
        show_pg_log
        RECAP+=$'\n'"regress: $(grep -E 'FAILED' "$TMP/regress.log" | head -n 20)"
        fail regress "$NBAD"
    fi
}

run_isolation() {
    local tests
    tests=$(suite_list ISOLATION)
    if [ -z "$tests" ]; then echo "== isolation: no specs listed, skipped"; return; fi
    if ! need_sandbox; then show_pg_log; fail isolation; return; fi
    echo "== isolation: $tests"
    # shellcheck disable=SC2086
    if "$PG_ISOLATION_REGRESS" --inputdir="$REPO" --outputdir="$TMP/isolation" --bindir="$PGBIN" \
        --use-existing --dbname=regression \
        --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" $tests 2>&1 | tee "$TMP/isolation.log"; then
        count_pg_regress "$TMP/isolation.log"
        pass isolation
    else
        count_pg_regress "$TMP/isolation.log"
        [ -f "$TMP/isolation/regression.diffs" ] && cat "$TMP/isolation/regression.diffs"
        show_pg_log
        RECAP+=$'\n'"isolation: $(grep -E 'FAILED' "$TMP/isolation.log" | head -n 20)"
        fail isolation "$NBAD"
    fi
}

run_tap() {
    local tapdir=$TMP/tap
    if ! ls "$REPO"/tests/t/*.pl >/dev/null 2>&1; then echo "== tap: no tests, skipped"; return; fi
    mkdir -p "$tapdir/t"
    # TAP_TESTS="003_connect_timeout.pl 026_standby.pl" runs a subset
    if [ -n "${TAP_TESTS:-}" ]; then
        local f
        for f in $TAP_TESTS; do cp "$REPO/tests/t/$f" "$tapdir/t/"; done
    else
        cp "$REPO"/tests/t/*.pl "$tapdir/t/"
    fi
    cp -r "$REPO/tests/lib" "$tapdir/lib"
    [ "$(id -u)" -eq 0 ] && chown -R "$RUN_USER:" "$tapdir"
    echo "== tap: $(cd "$tapdir/t" && echo *.pl)"
    if (cd "$tapdir" && as_run_user env -u PGPORT -u PGHOST -u PGUSER -u PGDATABASE -u top_builddir \
            PATH="$PGBIN:$PATH" \
            PERL5LIB="$tapdir/lib:$PG_PERL${PERL5LIB:+:$PERL5LIB}" \
            TESTDIR="$tapdir" \
            PG_REGRESS="$PG_REGRESS" \
            REDIS_SERVER="$(command -v redis-server)" \
            REDIS_CLI="$(command -v redis-cli)" \
            HOME="$tapdir" \
            prove ${PROVE_FLAGS:-} t/*.pl) 2>&1 | tee "$TMP/prove.log"; then
        count_prove "$TMP/prove.log"
        pass tap
    else
        count_prove "$TMP/prove.log"
        # the logs of the failed files only (all of them when none is named)
        local f n names
        names=$(sed -nE 's/^t\/([0-9A-Za-z_]+)\.pl +\(Wstat: .*/\1/p' "$TMP/prove.log")
        for f in "$tapdir"/tmp_check/log/*; do
            [ -f "$f" ] || continue
            if [ -n "$names" ]; then
                for n in $names; do
                    case "$(basename "$f")" in "regress_log_$n" | "${n}_"*.log) break ;; esac
                    n=
                done
                [ -n "$n" ] || continue
            fi
            echo "---- $f (last 40 lines) ----"
            tail -n 40 "$f"
        done
        # repeated at the end of the run, where a truncated log still shows it
        RECAP+=$'\n'"tap: $(echo $names)"$'\n'"$(grep -E '^(not ok|#   Failed test|#   at |#          got|#     expected|t/.*\(Wstat)' "$TMP/prove.log" | head -n 40)"
        fail tap "$NBAD"
    fi
}

# count_prove LOG: assertions from prove's summary.  "Tests=N" counts every
# assertion run; each "Failed: K" of the Test Summary Report is K failed
# ones; a file listed there with "Failed: 0" (died, bad plan, non-zero exit)
# is one failed test more.  Sets NOK and NBAD.
count_prove() {
    local total failed_asserts
    NOK=0 NBAD=0
    [ -f "$1" ] || return 0     # no log: the suite's verdict counts
    total=$(sed -nE 's/^Files=[0-9]+, Tests=([0-9]+),.*/\1/p' "$1" | tail -n 1)
    failed_asserts=$(perl -ne '$n += $1 if /^\S.*\(Wstat: .*Failed: (\d+)\)/; END { print $n // 0 }' "$1")
    NBAD=$(perl -ne '$n += ($1 || 1) if /^\S.*\(Wstat: .*Failed: (\d+)\)/; END { print $n // 0 }' "$1")
    NOK=$(( ${total:-0} - failed_asserts ))
    [ "$NOK" -ge 0 ] || NOK=0
    count "$NOK" "$NBAD"
}

# the README's demo, non-interactively, with its key output lines checked
run_demo() {
    echo "== demo: tests/demo.sh --check"
    if SKIP_BUILD=1 DEMO_DIR="$TMP/demo" bash "$REPO/tests/demo.sh" --check >"$TMP/demo.log" 2>&1; then
        count 1 0
        pass demo
    else
        tail -n 60 "$TMP/demo.log"
        count 0 1
        fail demo 1
    fi
}

# `make installcheck`, twice, as the README describes it
run_installcheck() {
    local icdir=$TMP/ic src=$TMP/ic/src sb=$TMP/ic_sandbox i ok=1 runs
    echo "== installcheck: make installcheck twice against a sandbox server"
    mkdir -p "$icdir"
    # a copy of the tree the run user may write to (results, tmp_check)
    (cd "$REPO" && tar --exclude=.git --exclude='./results' --exclude='./tmp_check' \
        --exclude='./output_iso' -cf - .) | (mkdir -p "$src" && cd "$src" && tar -xf -)
    [ "$(id -u)" -eq 0 ] && chown -R "$RUN_USER:" "$icdir"
    if ! bash "$REPO/tests/sandbox.sh" start "$sb" regression; then
        fail installcheck
        return
    fi
    # shellcheck disable=SC1091
    (. "$sb/env"
     for i in 1 2; do
        echo "-- make installcheck, run $i"
        if ! (cd "$src" && as_run_user env PATH="$PGBIN:$PATH" PGHOST="$PGHOST" PGPORT="$PGPORT" \
                PGUSER="$PGUSER" HOME="$icdir" \
                make -s PG_CONFIG="$PG_CONFIG" installcheck \
                PROVE_TESTS="${INSTALLCHECK_TAP:-tests/t/001_unreachable.pl}") >"$icdir/run$i.log" 2>&1; then
            tail -n 60 "$icdir/run$i.log"
            for f in "$src"/regression.diffs "$src"/output_iso/regression.diffs; do
                [ -f "$f" ] && head -n 80 "$f"
            done
            exit 1
        fi
        grep -E '^(# )?(All [0-9]+ tests passed|All tests successful|Result)' "$icdir/run$i.log" || true
        echo ok >>"$icdir/runs_ok"
     done) && ok=0
    bash "$REPO/tests/sandbox.sh" stop "$sb" >/dev/null 2>&1 || true
    # each of the two runs is one test
    runs=$(wc -l <"$icdir/runs_ok" 2>/dev/null || echo 0)
    if [ "$ok" -eq 0 ]; then
        count 2 0
        pass installcheck
    else
        count "$runs" 1
        fail installcheck 1
    fi
}

# the README's SQL examples, in order, against a sandbox of their own
run_readme() {
    local dir=$TMP/readme sb=$TMP/readme_sandbox list n line ok=0 bad=0
    echo "== readme: the sql blocks of README.md"
    mkdir -p "$dir/blocks"
    if ! list=$(perl "$REPO/tests/readme_blocks.pl" "$REPO/README.md" "$dir/blocks"); then
        fail readme
        return
    fi
    if ! bash "$REPO/tests/sandbox.sh" start "$sb" app; then
        fail readme
        return
    fi
    while read -r n line; do
        if (. "$sb/env"; psql -X -v ON_ERROR_STOP=1 -d app -f "$dir/blocks/$n.sql") \
                >"$dir/$n.out" 2>&1; then
            ok=$((ok + 1))
            echo "readme block $n (README.md line $line) ... ok"
        else
            bad=$((bad + 1))
            echo "readme block $n (README.md line $line) ... FAILED"
            sed 's/^/    | /' "$dir/blocks/$n.sql"
            sed 's/^/    > /' "$dir/$n.out" | tail -n 20
        fi
    done <<<"$list"
    [ "$bad" -eq 0 ] || SANDBOX=$sb show_pg_log
    bash "$REPO/tests/sandbox.sh" stop "$sb" >/dev/null 2>&1 || true
    count "$ok" "$bad"
    if [ "$bad" -eq 0 ]; then pass readme; else fail readme "$bad"; fi
}

for s in "${SUITES[@]}"; do
    "run_$s"
done

[ -n "$RECAP" ] && echo "== what failed:$RECAP"
[ ${#FAILED_NAMES[@]} -gt 0 ] && echo "failed suites: ${FAILED_NAMES[*]}"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ] && [ "$SUITES_FAILED" -eq 0 ]
