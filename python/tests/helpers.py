"""Fixtures of the Python tests: a store name of its own per test, removed after it; the repository's tools."""

import os
import random
import string
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

from shmkv import KvError, KvStore  # noqa: E402

BUILD = ROOT / "build"
BUN = os.environ.get("BUN") or str(ROOT / ".tools" / "node_modules" / ".bin" / "bun")
# Every name a test makes starts with this, so the runner can check it left none behind.
TEST_PREFIX = f"shmkv-pytest-{os.getpid()}-"
_counter = 0


def unique_name() -> str:
    global _counter
    _counter += 1
    return f"/{TEST_PREFIX}{_counter}-{''.join(random.choices(string.ascii_lowercase, k=6))}"


def unlink_quietly(name: str) -> None:
    try:
        KvStore.unlink(name)
    except KvError as error:
        if error.code != "ENOENT":
            raise


def leftover_segments():
    return sorted(f for f in os.listdir("/dev/shm") if f.startswith(TEST_PREFIX))


class TempStore:
    """A new store on a name of its own; leaving the block closes it and unlinks the name."""

    def __init__(self, **options):
        self.name = unique_name()
        self.store = KvStore.open(self.name, create=True, exclusive=True, **options)

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.store.close()
        unlink_quietly(self.name)


def kvtool(name: str, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BUILD / "kvtool"), name, *args], capture_output=True, text=True, env=env, timeout=30)


def wait_until(condition, what: str, seconds: float = 10):
    """Poll ``condition`` until it gives a true value, which is returned; fail after ``seconds``.

    For expiry: a TTL of tens of milliseconds and this, never a sleep as long as the TTL.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
    raise AssertionError(f"timed out after {seconds} s waiting until {what}")


def outcomes(calls):
    """What each of ``calls`` (a dict of name: callable) gives: its result, or the code of the KvError it raises."""
    results = {}
    for name, call in calls.items():
        try:
            results[name] = call()
        except KvError as error:
            results[name] = error.code
    return results
