# redis_sync — PGXS build.
#
#   make && make install        build and install into the server found by pg_config
#   make test                   every suite (regress, isolation, TAP, demo, installcheck,
#                               the README's SQL) in a sandbox
#   make demo                   live sandbox: Postgres + Redis on loopback
#   make indent, indent-check   PostgreSQL's layout (pgindent) for src/; needs pg_bsd_indent
#   make installcheck           regress, isolation and TAP suites against an already
#                               running server that preloads redis_sync (its launcher
#                               starts a worker in the test database; redis_sync.database
#                               empty or listing 'regression'), reaches a Redis it may
#                               FLUSHDB, and has a database "regression"; PGHOST/PGPORT/
#                               PGUSER name it.
#                               The TAP tests start their own servers (not as root);
#                               PROVE_TESTS=tests/t/001_unreachable.pl picks some.

MODULE_big = redis_sync
OBJS = \
	src/redis_sync.o \
	src/redis_url.o \
	src/redis_client.o \
	src/command.o \
	src/config.o \
	src/encode.o \
	src/capture.o \
	src/fence.o \
	src/outbox.o \
	src/publish.o \
	src/admin.o \
	src/shmem.o \
	src/worker.o \
	src/warm.o \
	src/drain.o \
	src/readthrough.o \
	src/verify.o
# wave 2 modules, one line per topic
OBJS_CRASH = src/ddl.o
#
OBJS_LIFE = src/lifecycle.o
#
OBJS_SEC = src/as_owner.o src/claim.o src/rowsec.o src/identity.o
#
OBJS_ENC = src/epoch.o
#
OBJS_WB =
#
OBJS_WARM =
#
OBJS_LAUNCH = src/launcher.o
#
OBJS_TLS = src/redis_conn.o src/redis_tls.o
#
OBJS_CLUSTER = src/cluster.o
#
OBJS_SHAPE = src/warm_queue.o src/canonical.o src/decode.o src/subxact.o src/markers.o src/warm_push.o src/keys_sql.o src/wb_config.o src/wb_decode.o src/wb_apply.o src/wb_counters.o src/wb_schedule.o src/wb_api.o src/xact_step.o src/marker_sweep.o src/fence_cluster.o src/stats.o src/circuit.o src/worker_signal.o src/redis_cluster.o src/redis_conn_many.o src/launcher_hold.o src/allowlist.o src/outbox_write.o src/redis_conn_params.o src/change.o src/wb_overlap.o src/redis_resp.o src/reply_limit.o
OBJS_BULK = src/redis_stream.o src/killfence.o src/fence_multi.o
OBJS += $(OBJS_CRASH) $(OBJS_LIFE) $(OBJS_SEC) $(OBJS_ENC) $(OBJS_WB) $(OBJS_WARM) $(OBJS_LAUNCH) $(OBJS_TLS) $(OBJS_CLUSTER) $(OBJS_SHAPE) $(OBJS_BULK)

EXTENSION = redis_sync
DATA = $(wildcard extension/redis_sync--*.sql)

REGRESS_BASE = setup command url permissions write_through write_through_json invalidate sync_errors consistency stats write_behind operations limits
# wave 2 suites, one line per topic (kept apart so parallel work merges cleanly)
REGRESS_CRASH = ddl
#
REGRESS_LIFE = lifecycle wb_ddl
#
REGRESS_SEC = security null_args
#
REGRESS_ENC = encoding keys roundtrip encoding_locale dirty_set verify_rls never_wrong versions
#
REGRESS_WB = write_behind_partial purge_types wb_kept_plans wb_keyed
#
REGRESS_WARM = warm get_invalidate replica
#
REGRESS_LAUNCH = launcher
#
REGRESS_TLS = tls
#
REGRESS_CLUSTER = cluster
#
REGRESS_SHAPE =

# the change buffer (issue 18)
REGRESS_BUFFER = buffer
# the single-row push (issue 18)
REGRESS_PUSH = apply_one bulk_multi key_moves trigger_order
# upgrade runs last: it drops and recreates the extension
REGRESS = $(REGRESS_BASE) $(REGRESS_CRASH) $(REGRESS_LIFE) $(REGRESS_SEC) $(REGRESS_ENC) $(REGRESS_WB) $(REGRESS_WARM) $(REGRESS_LAUNCH) $(REGRESS_TLS) $(REGRESS_CLUSTER) $(REGRESS_SHAPE) $(REGRESS_BUFFER) $(REGRESS_PUSH) upgrade
REGRESS_OPTS = --use-existing
# cache_diff first: it installs iso_cache_diff(), which the write_through_* specs use
ISOLATION = cache_diff write_through_race write_through_delete_insert write_through_savepoint write_through_serializable write_through_trigger_order read_through outbox_skip_locked outbox_held_replay outbox_spill_replay outbox_purge_snapshot
ISOLATION_CRASH =
#
ISOLATION_SEC = claim_race
#
ISOLATION_ENC =
#
ISOLATION_WB =
#
ISOLATION_WARM = warm_race get_invalidate_race resync_lock_order
#
ISOLATION_LAUNCH =
#
ISOLATION_CLUSTER =
ISOLATION += $(ISOLATION_CRASH) $(ISOLATION_SEC) $(ISOLATION_ENC) $(ISOLATION_WB) $(ISOLATION_WARM) $(ISOLATION_LAUNCH) $(ISOLATION_CLUSTER)
ISOLATION_OPTS = --use-existing
TAP_TESTS = 1
PROVE_TESTS ?= tests/t/*.pl

PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK = -lhiredis -lssl -lcrypto

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# after the include: PGXS sets PROVE_FLAGS to empty (the TAP helpers live in
# tests/lib); "override" keeps them when PROVE_FLAGS=--verbose is given
override PROVE_FLAGS += -I tests/lib

# every object depends on the module headers (PGXS does not track them)
$(OBJS): $(wildcard src/*.h)

# the suites share one database, which the worker may be connected to
CONTRIB_TESTDB = regression
ISOLATION_TESTDB = regression

.PHONY: test demo demo-stop bench bench-quick print-% indent indent-check

test:
	bash tests/run_tests.sh

demo:
	bash tests/demo.sh

demo-stop:
	bash tests/sandbox.sh stop /tmp/redis_sync_demo

# benchmarks (never part of the tests): full run rewrites bench/RESULTS.md
bench:
	bash bench/run.sh

bench-quick:
	bash bench/run.sh --quick

# PostgreSQL's layout for src/*.c and src/*.h (pg_bsd_indent 2.1.1, Debian
# package pg-bsd-indent; PGINDENT=<PG 15 source>/src/tools/pgindent/pgindent
# to run pgindent itself): indent rewrites, indent-check only reports
indent:
	PG_CONFIG=$(PG_CONFIG) bash tools/indent.sh

indent-check:
	PG_CONFIG=$(PG_CONFIG) bash tools/indent.sh --check

# used by the harness to read the suite lists: make -s print-REGRESS
print-%:
	@echo $($*)
