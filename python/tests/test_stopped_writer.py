"""Reads never wait for a writer: with a writer stopped (SIGSTOP) inside the lock, mid-write, every read
answers at once with the committed state, on a handle that may not wait for the lock at all."""

import contextlib
import os
import signal
import subprocess
import time
import unittest

from tests.helpers import BUILD, TempStore, kvtool, wait_until
from shmkv import KvError, KvStore


def stopped_writer(name: str, args, point: int) -> subprocess.Popen:
    """kvtool_fault running ``args``, stopped at fault point ``point`` with the lock held."""
    env = {**os.environ, "KV_FAULT_POINT": f"{point}:stop"}
    writer = subprocess.Popen([str(BUILD / "kvtool_fault"), name, *args], env=env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # wait for the condition: state T in /proc
        with open(f"/proc/{writer.pid}/stat") as stat:
            if stat.read().split(") ")[1].startswith("T"):
                return writer
    writer.kill()
    raise AssertionError("the writer did not stop")


class StoppedWriter(unittest.TestCase):
    # (what, kvtool arguments, fault points: before the counters, mid-write, after the undo record's disarm;
    # a delete passes no point 4)
    WRITES = [
        ("insert", ["set", "new", "inserted"], [3, 5, 7]),
        ("update", ["set", "a", "rewritten"], [3, 4, 7]),
        ("delete", ["del", "b"], [3, 5, 7]),
    ]

    def test_get_keys_and_status_answer_at_once_with_the_committed_state(self):
        for what, args, points in self.WRITES:
            for point in points:
                with self.subTest(write=what, point=point), TempStore(max_entries=8) as t:
                    t.store.set("a", "a-value")
                    t.store.set("b", "b-value")
                    # After the disarm (point 7) the write is complete: only its counters are still odd.
                    done = point == 7
                    entries = [("a", "rewritten" if done and what == "update" else "a-value"), ("b", "b-value")]
                    if done and what == "insert":
                        entries.append(("new", "inserted"))
                    if done and what == "delete":
                        entries.remove(("b", "b-value"))
                    # A delete in progress moves index cells: a lookup that does not find its key cannot
                    # tell "absent" then, and takes the lock (as the Bun binding's does). Present keys are read.
                    looked_up = ["a"] if what == "delete" else ["a", "b", "new"]
                    with self.stopped(t.name, args, point), KvStore.open(t.name, lock_timeout_ms=0) as reader:
                        before = time.monotonic()
                        seen = {
                            "got": [(key, reader.get(key)) for key in looked_up],
                            "keys": reader.keys(),
                            "entries": [(e.key, e.value) for e in reader.status().entries],
                            "version": reader.version,
                        }
                        self.assertLess(time.monotonic() - before, 1.0)
                        self.assertEqual(seen, {
                            "got": [(key, dict(entries).get(key)) for key in looked_up],
                            "keys": [key for key, _ in entries],
                            "entries": entries,
                            "version": 3 if done else 2,
                        })
                        with self.assertRaises(KvError) as caught:  # a write would wait: refused at once
                            reader.set("a", "x")
                        self.assertEqual(caught.exception.code, "STORE_BUSY")
                    self.assertEqual(kvtool(t.name, "check").returncode, 0)  # the next locker repairs

    def test_an_entry_expires_for_readers_while_a_stopped_writer_holds_the_lock(self):
        with TempStore(max_entries=8) as t:
            t.store.set("a", "a-value")
            t.store.set("brief", "v", ttl_ms=40)
            with self.stopped(t.name, ["set", "a", "rewritten"], 4), KvStore.open(t.name, lock_timeout_ms=0) as reader:
                wait_until(lambda: reader.get("brief") is None, "the entry has expired")
                self.assertEqual((reader.keys(), reader.get("a"), reader.count), (["a"], "a-value", 2))
                with self.assertRaises(KvError) as caught:  # reclaiming takes the lock: refused at once
                    reader.expire()
                self.assertEqual(caught.exception.code, "STORE_BUSY")
            self.assertEqual((t.store.expire(), t.store.keys(), t.store.expired), (1, ["a"], 1))

    @contextlib.contextmanager
    def stopped(self, name, args, point):
        writer = stopped_writer(name, args, point)
        try:
            yield writer
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()


if __name__ == "__main__":
    unittest.main()
