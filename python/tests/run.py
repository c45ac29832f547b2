"""Runs every Python test (unittest) and ends with the line .ci/run counts: "python: N passed, N failed".

Also fails when the tests leave a segment of theirs in /dev/shm.
"""

import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.helpers import leftover_segments  # noqa: E402


def main() -> int:
    suite = unittest.defaultTestLoader.discover(str(HERE), top_level_dir=str(HERE.parent))
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    left = leftover_segments()
    if left:
        print(f"segments left in /dev/shm by the tests: {left}")
        failed += 1
    passed = result.testsRun - len(result.failures) - len(result.errors) - len(result.skipped)
    print(f"python: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
