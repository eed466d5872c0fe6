"""The chaos test of issue 3 in its short form (20 s) for `make test`; the long form is
`make chaos` (tests/chaos.py, CHAOS_SECONDS). See tests/chaos.py for what it asserts."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402
import chaos  # noqa: E402

SHORT_SECONDS = 20


def test_chaos_short():
    chaos.run(SHORT_SECONDS)


if __name__ == "__main__":
    harness.main()
