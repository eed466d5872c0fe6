#!/bin/sh
# Runs every tests/integration/test_*.py against $BUILD/probed (BUILD defaults to build)
# with /usr/bin/python3, prints each file's output, then the summed line
# "N passed, N failed". Exits 1 when any test failed or a file did not report counts.
# Arguments: FILE.py selects test files (default: all), any other argument is a test
# name passed to every selected file (default: all tests).
BUILD=${BUILD:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
case $BUILD in /*) b=$BUILD ;; *) b=$root/$BUILD ;; esac
PROBED=${PROBED:-$b/probed}
TOOLS=${TOOLS:-$b/tests}
export PROBED TOOLS
PY=/usr/bin/python3

files=""
names=""
for a in "$@"; do
        case $a in
        *.py) files="$files $here/$(basename "$a")" ;;
        *) names="$names $a" ;;
        esac
done
if [ -z "$files" ]; then
        files=$(ls "$here"/test_*.py 2>/dev/null)
        # names picked from all files: a file without them runs nothing
        [ -n "$names" ] && export HARNESS_IGNORE_UNKNOWN=1
fi

for f in "$PROBED" "$TOOLS/target"; do
        if [ ! -x "$f" ]; then
                echo "run.sh: $f is missing (build it first: make BUILD=$BUILD)" >&2
                echo "0 passed, 1 failed"
                exit 1
        fi
done

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
total_pass=0
total_fail=0
for t in $files; do
        if [ ! -e "$t" ]; then
                echo "FAIL $(basename "$t"): no such test file"
                total_fail=$((total_fail + 1))
                continue
        fi
        echo "== $(basename "$t")"
        # shellcheck disable=SC2086 # names are words by design
        { "$PY" -u "$t" $names 2>&1; echo $? > "$tmp/rc"; } | tee "$tmp/out"
        rc=$(cat "$tmp/rc")
        line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$tmp/out" | tail -n 1)
        if [ -n "$line" ]; then
                p=$(echo "$line" | cut -d' ' -f1)
                n=$(echo "$line" | cut -d' ' -f3)
                if [ "$rc" != 0 ] && [ "$n" = 0 ]; then
                        n=1
                fi
        else
                echo "FAIL $(basename "$t"): exited $rc without a summary line"
                p=0
                n=1
        fi
        total_pass=$((total_pass + p))
        total_fail=$((total_fail + n))
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
