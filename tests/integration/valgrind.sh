#!/bin/sh
# Runs integration scenarios with every probed process under valgrind (through the
# harness's PROBED_WRAPPER, so the same Python code runs with deadlines x10) and fails
# on any memory error or definite/indirect leak. BUILD defaults to build.
# Arguments are run.sh's (FILE.py and test names); by default a set of test_core.py
# tests covering the full scenario, command-line paths, error paths and shutdown, plus
# reloads and one attempt of each other kind (cancelled mid-attempt where it matters), and
# the checks of the answer (body regex and JSON, tcp expect, TLS files and mTLS), and names
# (a lookup abandoned by its attempt's timeout, the dns kind).
BUILD=${BUILD:-build}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v valgrind >/dev/null 2>&1; then
        echo "valgrind.sh: valgrind is not installed" >&2
        exit 1
fi
PROBED_WRAPPER="valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-fds=no --num-callers=30"
export PROBED_WRAPPER
if [ $# -gt 0 ]; then
        exec env BUILD=$BUILD sh "$here/run.sh" "$@"
fi
fail=0
BUILD=$BUILD sh "$here/run.sh" test_core.py test_scenario_full test_check_config_prints_json \
        test_check_config_errors_name_the_path test_check_command test_drain \
        test_redirects test_body_framings test_close_and_reset_are_failures test_tcp_up_and_down \
        test_second_signal_exits_at_once test_sigterm_with_many_hung_attempts || fail=1
BUILD=$BUILD sh "$here/run.sh" test_lifecycle.py test_reload_by_name \
        test_reload_invalid_changes_nothing || fail=1
BUILD=$BUILD sh "$here/run.sh" test_kinds.py test_ws_cancel_pending_pong test_grpc_serving \
        test_exec_timeout_kills_group || fail=1
BUILD=$BUILD sh "$here/run.sh" test_grpc_health.py test_grpc_and_http1_share_the_port \
        test_grpc_garbage_after_preface_closes || fail=1
BUILD=$BUILD sh "$here/run.sh" test_checks.py test_expect_json_and_regex test_tcp_banner \
        test_mtls_nginx || fail=1
BUILD=$BUILD sh "$here/run.sh" test_names.py test_resolver_that_never_answers \
        test_dns_kind_against_the_server || fail=1
exit $fail
