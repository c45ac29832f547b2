"""The Python client's API: reads, writes, conditions, listings, errors and the handle's lifetime."""

import os
import subprocess
import sys
import unittest

from tests.helpers import ROOT, TempStore, kvtool, outcomes, unique_name, unlink_quietly
from shmkv import Entry, KvConflictError, KvError, KvStore, Status


class ReadsAndWrites(unittest.TestCase):
    def test_set_then_get_returns_str_values_and_their_revisions(self):
        with TempStore() as t:
            self.assertEqual([t.store.set("greeting", "héllo"), t.store.set("other", "x")], [1, 2])
            self.assertEqual(t.store.get("greeting"), "héllo")
            entry = t.store.get_entry("greeting")
            self.assertEqual((entry.key, entry.value, entry.revision), ("greeting", "héllo", 1))
            self.assertGreater(entry.timestamp, 1_700_000_000)
            self.assertIsNone(t.store.get("nothing"))
            self.assertIsNone(t.store.get_entry("nothing"))

    def test_bytes_values_and_keys_come_back_byte_for_byte_with_raw(self):
        with TempStore() as t:
            value = bytes(range(256))[:200] + b"\x00\xff\xfe"
            t.store.set(b"bin\xff", value)
            self.assertEqual(t.store.get(b"bin\xff", raw=True), value)
            self.assertEqual(t.store.get_entry(b"bin\xff", raw=True), Entry(b"bin\xff", value, 1, t.store.get_entry(b"bin\xff").timestamp))
            # As str, bytes that are not UTF-8 read as U+FFFD, as the Bun binding reads them.
            self.assertEqual(t.store.get(b"bin\xff")[-3:], "\x00\ufffd\ufffd")
            self.assertEqual(t.store.keys(raw=True), [b"bin\xff"])

    def test_an_empty_value_is_a_value(self):
        with TempStore() as t:
            t.store.set("empty", "")
            self.assertEqual((t.store.get("empty"), t.store.get("empty", raw=True)), ("", b""))

    def test_delete_removes_and_reports_a_missing_key(self):
        with TempStore() as t:
            t.store.set("k", "v")
            self.assertEqual([t.store.delete("k"), t.store.delete("k"), t.store.get("k")], [True, False, None])
            self.assertEqual(t.store.version, 2)

    def test_set_if_writes_only_at_the_expected_revision(self):
        with TempStore() as t:
            self.assertEqual(t.store.set_if("k", "first", 0), 1)  # 0: only when absent
            with self.assertRaises(KvConflictError) as caught:
                t.store.set_if("k", "again", 0)
            self.assertEqual((caught.exception.code, caught.exception.revision), ("CONFLICT", 1))
            with self.assertRaises(KvConflictError) as caught:
                t.store.set_if("k", "stale", 7)
            self.assertEqual(str(caught.exception), "cannot set 'k': it is at revision 1 (expected revision 7)")
            self.assertEqual(t.store.set_if("k", "second", 1), 2)
            self.assertEqual(t.store.get("k"), "second")

    def test_delete_if_removes_only_at_the_expected_revision(self):
        with TempStore() as t:
            t.store.set("k", "v")
            with self.assertRaises(KvConflictError):
                t.store.delete_if("k", 5)
            self.assertEqual([t.store.delete_if("k", 1), t.store.get("k")], [True, None])


class Listings(unittest.TestCase):
    def test_keys_lists_those_with_the_prefix_in_slot_order(self):
        with TempStore(max_entries=8) as t:
            for key in ["app/a", "app/b", "other", "app/c"]:
                t.store.set(key, "v")
            t.store.delete("app/b")
            self.assertEqual(t.store.keys("app/"), ["app/a", "app/c"])
            self.assertEqual(t.store.keys(), ["app/a", "other", "app/c"])
            self.assertEqual(t.store.keys("nope"), [])

    def test_status_gives_the_version_the_geometry_and_every_entry(self):
        with TempStore(max_entries=4, key_max=16, value_max=32) as t:
            t.store.set("a", "1")
            t.store.set("b", "2")
            t.store.set("a", "3")
            status = t.store.status()
            stamps = [e.timestamp for e in status.entries]
            self.assertEqual(status, Status(3, 2, 4, 16, 32, [Entry("a", "3", 3, stamps[0]), Entry("b", "2", 2, stamps[1])]))
            self.assertEqual(t.store.count, 2)


class Opening(unittest.TestCase):
    def test_create_applies_the_geometry_and_an_existing_store_keeps_its_own(self):
        with TempStore(max_entries=3, key_max=8, value_max=16) as t:
            self.assertTrue(t.store.created)
            with KvStore.open(t.name, create=True, max_entries=99) as again:
                self.assertEqual((again.created, again.max_entries, again.key_max, again.value_max), (False, 3, 8, 16))

    def test_the_mode_given_is_the_segments(self):
        with TempStore(mode=0o640) as t:
            self.assertEqual(os.stat(f"/dev/shm{t.name}").st_mode & 0o777, 0o640)

    def test_a_missing_store_is_ENOENT_and_exclusive_refuses_an_existing_one(self):
        missing = unique_name()
        with self.assertRaises(KvError) as caught:
            KvStore.open(missing)
        self.assertEqual(caught.exception.code, "ENOENT")
        with TempStore() as t:
            with self.assertRaises(KvError) as caught:
                KvStore.open(t.name, create=True, exclusive=True)
            self.assertEqual(caught.exception.code, "EEXIST")

    def test_the_context_manager_closes_and_a_closed_store_raises_CLOSED(self):
        name = unique_name()
        try:
            with KvStore.open(name, create=True) as store:
                store.set("k", "v")
            self.assertTrue(store.closed)
            with self.assertRaises(KvError) as caught:
                store.get("k")
            self.assertEqual(caught.exception.code, "CLOSED")
            store.close()  # idempotent
            with KvStore.open(name) as again:  # closing never unlinks
                self.assertEqual(again.get("k"), "v")
        finally:
            unlink_quietly(name)


class Errors(unittest.TestCase):
    def test_each_failure_has_the_bun_bindings_code(self):
        with TempStore(max_entries=1, key_max=4, value_max=4) as t:
            t.store.set("k", "v")
            cases = {
                "KEY_TOO_LONG": lambda: t.store.set("kkkkk", "v"),
                "VALUE_TOO_LONG": lambda: t.store.set("k", "vvvvv"),
                "TABLE_FULL": lambda: t.store.set("j", "v"),
                "INVALID_ARGUMENT": lambda: t.store.set("", "v"),
                "CONFLICT": lambda: t.store.set_if("k", "v", 9),
            }
            self.assertEqual(outcomes(cases), {code: code for code in cases})
            self.assertEqual(t.store.get("k"), "v")  # nothing lost
            reads = outcomes({key: lambda key=key: t.store.get(key) for key in ["kkkkk", "", "a\0b"]})
            self.assertEqual(reads, {"kkkkk": "KEY_TOO_LONG", "": "INVALID_ARGUMENT", "a\0b": "INVALID_ARGUMENT"})

    def test_a_value_of_another_type_is_INVALID_ARGUMENT(self):
        with TempStore() as t:
            with self.assertRaises(KvError) as caught:
                t.store.set("k", 42)
            self.assertEqual((caught.exception.code, str(caught.exception)), ("INVALID_ARGUMENT", "the value must be str or bytes, not int"))

    def test_a_missing_library_names_the_command_that_builds_it(self):
        script = "from shmkv import KvStore, KvError\ntry:\n    KvStore.open('/x')\nexcept KvError as e:\n    print(e.code, e)\n"
        env = {**os.environ, "KV_LIB_PATH": "/nonexistent/libshared_memory_kv.so", "PYTHONPATH": str(ROOT / "python")}
        ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual((ran.returncode, ran.stdout, ran.stderr), (
            0,
            "LIBRARY_MISSING shmkv: the C library is missing at /nonexistent/libshared_memory_kv.so: "
            "run `make libso` (or set KV_LIB_PATH)\n",
            "",
        ))


if __name__ == "__main__":
    unittest.main()


class FollowingAResize(unittest.TestCase):
    def test_a_handle_open_across_a_resize_reads_and_writes_the_new_segment(self):
        with TempStore(max_entries=4, key_max=8, value_max=16) as t:
            t.store.set("a", "1")
            before = t.store.get_entry("a")
            resized = kvtool(t.name, "resize", "64", "32", "100")
            self.assertEqual(resized.returncode, 0, resized.stderr)
            # Another process writes to the new segment; the old handle's lock-free reads must see it.
            self.assertEqual(kvtool(t.name, "set", "b", "a value longer than sixteen").returncode, 0)
            self.assertEqual(t.store.get("b"), "a value longer than sixteen")
            self.assertEqual(t.store.get_entry("a"), before)
            status = t.store.status()
            self.assertEqual((status.version, status.entry_count, status.max_entries, status.value_max), (2, 2, 64, 100))
            self.assertEqual(t.store.keys(), ["a", "b"])
            self.assertEqual(t.store.set("c", "x" * 50), 3)
            self.assertEqual(t.store.version, 3)


class HeapValues(unittest.TestCase):
    """Layout 2: each value lives in a chunk of the segment's heap, found by an offset in its entry."""

    def test_values_of_mixed_sizes_read_back_whole_by_every_read_and_after_a_resize_that_moves_them(self):
        sizes = [0, 1, 7, 8, 9, 100, 1000, 5000, 20000]
        with TempStore(max_entries=32, key_max=16, value_max=20000, memory_bytes=256 * 1024) as t:
            values = {f"k{size}": bytes((i * 7 + size) % 256 for i in range(size)) for size in sizes}
            for key, value in values.items():
                t.store.set(key, value)
            # Rewrites free chunks that later writes reuse, at other sizes.
            values["k100"] = values["k100"] * 50
            values["k5000"] = b"short now"
            t.store.set("k100", values["k100"])
            t.store.set("k5000", values["k5000"])
            t.store.set("k9", b"x" * 3000)
            values["k9"] = b"x" * 3000

            def everything(store):
                return {
                    "got": {key: store.get(key, raw=True) for key in values},
                    "status": {e.key.decode(): e.value for e in store.status(raw=True).entries},
                    "keys": sorted(store.keys()),
                }

            expected = {"got": values, "status": values, "keys": sorted(values)}
            self.assertEqual(everything(t.store), expected)
            self.assertEqual(kvtool(t.name, "check").returncode, 0)
            # Another process moves every value into a new heap (more entries, longer values, more
            # memory); this handle follows on its next read, and reads a value C wrote there.
            resized = kvtool(t.name, "resize", "64", "0", "100000", str(1024 * 1024))
            self.assertEqual(resized.returncode, 0, resized.stderr)
            self.assertEqual(kvtool(t.name, "set", "big", "b" * 60000).returncode, 0)
            values["big"] = b"b" * 60000
            expected = {"got": values, "status": values, "keys": sorted(values)}
            self.assertEqual(everything(t.store), expected)
            status = t.store.status()
            self.assertEqual((status.max_entries, status.value_max, status.entry_count), (64, 100000, len(values)))

    def test_a_store_full_in_memory_refuses_the_set_and_keeps_what_it_holds(self):
        with TempStore(max_entries=64, value_max=10000, memory_bytes=4096) as t:
            t.store.set("a", "x" * 3000)
            with self.assertRaises(KvError) as caught:
                t.store.set("b", "y" * 3000)
            self.assertEqual(caught.exception.code, "TABLE_FULL")
            self.assertEqual((t.store.get("a"), t.store.get("b"), t.store.count), ("x" * 3000, None, 1))
