"""The Python client's error codes are the Bun binding's: generated from src/errors.ts, checked here for drift."""

import json
import subprocess
import unittest

from tests.helpers import BUN, ROOT
from shmkv import code_of
from shmkv._codes import RC

CODES_FILE = ROOT / "python" / "shmkv" / "_codes.py"


def bun(*args: str) -> str:
    ran = subprocess.run([BUN, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    if ran.returncode != 0:
        raise AssertionError(f"bun {args} exited {ran.returncode}: {ran.stderr}")
    return ran.stdout


class Codes(unittest.TestCase):
    def test_the_generated_table_is_up_to_date_with_src_errors_ts(self):
        self.assertEqual(CODES_FILE.read_text(), bun("python/gen-codes.ts"), "run `make python-codes`")

    def test_every_return_code_and_errno_gets_the_code_the_bun_binding_gives_it(self):
        rcs = sorted(RC.values()) + [-n for n in range(1, 140)] + [-4000, -30950]
        script = f"import {{ codeOf }} from './src/errors.ts'; console.log(JSON.stringify({json.dumps(rcs)}.map(codeOf)))"
        bun_codes = json.loads(bun("-e", script))
        self.assertEqual([code_of(rc) for rc in rcs], bun_codes)


if __name__ == "__main__":
    unittest.main()
