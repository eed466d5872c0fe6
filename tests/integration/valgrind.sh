#!/bin/sh
# Runs integration scenarios with every probed process under valgrind (through the
# harness's PROBED_WRAPPER, so the same Python code runs with deadlines x10) and fails
# on any memory error or definite/indirect leak. BUILD defaults to build.
# Arguments are run.sh's (FILE.py and test names); by default a set of test_core.py
# tests covering the full scenario, command-line paths, error paths and shutdown.
BUILD=${BUILD:-build}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v valgrind >/dev/null 2>&1; then
        echo "valgrind.sh: valgrind is not installed" >&2
        exit 1
fi
PROBED_WRAPPER="valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-fds=no --num-callers=30"
export PROBED_WRAPPER
if [ $# -eq 0 ]; then
        set -- test_core.py test_scenario_full test_check_config_prints_json \
                test_check_config_errors_name_the_path test_check_command test_drain \
                test_redirects test_close_and_reset_are_failures test_tcp_up_and_down \
                test_second_signal_exits_at_once test_sigterm_with_many_hung_attempts
fi
BUILD=$BUILD sh "$here/run.sh" "$@"
