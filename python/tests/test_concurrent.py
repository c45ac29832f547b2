"""Listings read while a C writer keeps rewriting every key: each entry whole, never torn."""

import subprocess
import unittest

from tests.helpers import BUILD, TempStore
from shmkv._lib import kv_lib


def kv_hash(data: bytes) -> int:
    return kv_lib().kv_hash(data, len(data))


def checksummed(value: str) -> bool:
    """kvtool's format: BODY "#" hex8(kv_hash(BODY)); a torn read would mix two values."""
    body, _, digest = value.rpartition("#")
    return len(digest) == 8 and f"{kv_hash(body.encode()):08x}" == digest


class ConcurrentWriter(unittest.TestCase):
    def test_status_and_keys_never_show_a_torn_entry(self):
        keys = 16
        with TempStore(max_entries=keys) as t:
            writer = subprocess.Popen([str(BUILD / "kvtool"), t.name, "writer", "1", str(keys), "100000000"],
                                      stdout=subprocess.DEVNULL)
            try:
                torn, listings, versions = [], 0, set()
                while len(versions) < 200:
                    status = t.store.status()
                    versions.add(status.version)
                    listings += 1
                    torn += [e.value for e in status.entries if not checksummed(e.value)]
                    self.assertLessEqual(len(t.store.keys("k")), keys)
                self.assertIsNone(writer.poll())  # it was writing all along
            finally:
                writer.kill()
                writer.wait()
            self.assertEqual(torn, [])
            self.assertEqual(sorted(t.store.keys()), sorted(f"k{i}" for i in range(keys)))


if __name__ == "__main__":
    unittest.main()
