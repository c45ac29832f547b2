"""Expiry (TTL) and LRU eviction through the Python client: its lock-free reads drop an expired entry at
once, its writes set and keep expiries, and its reads keep a key alive in a store that evicts."""

import time
import unittest

from tests.helpers import TempStore, outcomes, wait_until
from shmkv import Entry, KvError, KvStore, Status

TTL_MS = 40


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Expiry(unittest.TestCase):
    def test_an_entry_set_with_a_ttl_shows_its_expiry_then_is_absent_to_every_read(self):
        with TempStore(max_entries=8) as t:
            t.store.set("forever", "stays")
            before = now_ms()
            revision = t.store.set("brief", "goes", ttl_ms=TTL_MS)
            after = now_ms()
            entry = t.store.get_entry("brief")
            self.assertEqual(entry, Entry("brief", "goes", revision, entry.timestamp, entry.expires_at))
            self.assertTrue(before + TTL_MS <= entry.expires_at * 1000 <= after + TTL_MS, entry.expires_at)
            self.assertIsNone(t.store.get_entry("forever").expires_at)
            self.assertEqual(t.store.keys(), ["forever", "brief"])

            wait_until(lambda: t.store.get("brief") is None, "the entry has expired")
            self.assertGreaterEqual(now_ms(), entry.expires_at * 1000)
            status = t.store.status()
            forever = t.store.get_entry("forever")
            # Absent to every read; still counted, as nothing has reclaimed it yet.
            self.assertEqual(
                [t.store.get_entry("brief"), t.store.keys(), status],
                [None, ["forever"], Status(2, 2, 8, 63, 255, [forever], "none")],
            )
            self.assertEqual((t.store.expire(), t.store.count, t.store.expired), (1, 1, 1))
            self.assertEqual(t.store.expire(), 0)

    def test_a_set_without_a_ttl_clears_the_expiry_and_a_set_with_one_replaces_it(self):
        with TempStore() as t:
            t.store.set("k", "v1", ttl_ms=60_000)
            t.store.set("k", "v2")
            self.assertIsNone(t.store.get_entry("k").expires_at)
            t.store.set_if("k", "v3", t.store.get_entry("k").revision, ttl_ms=120_000)
            self.assertAlmostEqual(t.store.get_entry("k").expires_at, time.time() + 120, delta=5)
            t.store.set("k", "v4", ttl_ms=0)  # 0: never
            self.assertIsNone(t.store.get_entry("k").expires_at)

    def test_writes_treat_an_expired_key_as_absent(self):
        with TempStore() as t:
            for key in ["cas", "counter", "gone"]:
                t.store.set(key, "41", ttl_ms=TTL_MS)
            wait_until(lambda: t.store.keys() == [], "every key has expired")
            revision = t.store.set_if("cas", "created again", 0)  # 0: only when absent
            self.assertEqual(t.store.get_entry("cas").revision, revision)
            self.assertEqual(t.store.incr("counter", 1), 1)  # counts from 0, not 41
            self.assertFalse(t.store.delete("gone"))
            self.assertEqual(
                [(e.key, e.value, e.expires_at) for e in t.store.status().entries],
                [("cas", "created again", None), ("counter", "1", None)],
            )
            self.assertEqual((t.store.count, t.store.expired), (2, 3))  # each write reclaimed what it met

    def test_incr_applies_its_ttl_only_when_it_creates_the_counter(self):
        with TempStore() as t:
            self.assertEqual(t.store.incr("hits", 5, ttl_ms=60_000), 5)
            expires_at = t.store.get_entry("hits").expires_at
            self.assertAlmostEqual(expires_at, time.time() + 60, delta=5)
            self.assertEqual([t.store.incr("hits", ttl_ms=1), t.store.incr("hits", -10)], [6, -4])
            self.assertEqual((t.store.get("hits"), t.store.get_entry("hits").expires_at), ("-4", expires_at))
            self.assertEqual(t.store.incr("plain"), 1)
            self.assertIsNone(t.store.get_entry("plain").expires_at)

    def test_incr_of_a_value_that_is_not_an_integer_or_past_int64_writes_nothing(self):
        with TempStore() as t:
            t.store.set("word", "hello")
            t.store.set("top", str(2**63 - 1))
            self.assertEqual(
                outcomes({"word": lambda: t.store.incr("word"), "top": lambda: t.store.incr("top")}),
                {"word": "NOT_A_NUMBER", "top": "ERANGE"},
            )
            self.assertEqual((t.store.get("word"), t.store.get("top"), t.store.version), ("hello", str(2**63 - 1), 2))

    def test_a_ttl_or_an_increment_or_a_policy_of_another_kind_is_INVALID_ARGUMENT(self):
        with TempStore() as t:
            calls = {
                "negative ttl": lambda: t.store.set("k", "v", ttl_ms=-1),
                "fractional ttl": lambda: t.store.set("k", "v", ttl_ms=1.5),
                "bool ttl": lambda: t.store.set_if("k", "v", 0, ttl_ms=True),
                "str ttl": lambda: t.store.incr("k", ttl_ms="30s"),
                "float increment": lambda: t.store.incr("k", 1.0),
                "increment beyond int64": lambda: t.store.incr("k", 2**63),
                "ttl beyond u64": lambda: t.store.set("k", "v", ttl_ms=2**64),
                "expiry beyond u64": lambda: t.store.set("k", "v", ttl_ms=2**64 - 1),
                "negative max_slots": lambda: t.store.expire(-1),
                "unknown policy": lambda: TempStore(evict="fifo"),
            }
            self.assertEqual(outcomes(calls), {what: "INVALID_ARGUMENT" for what in calls})
            self.assertEqual((t.store.keys(), t.store.version), ([], 0))


class Eviction(unittest.TestCase):
    def test_a_store_is_made_with_its_policy_and_an_existing_one_keeps_its_own(self):
        with TempStore(evict="lru") as lru, TempStore() as plain:
            self.assertEqual((lru.store.evict, plain.store.evict, lru.store.status().evict), ("lru", "none", "lru"))
            with KvStore.open(plain.name, create=True, evict="lru") as again:
                self.assertEqual(again.evict, "none")

    def test_a_key_read_just_before_a_burst_of_new_keys_survives_it(self):
        keys = 8
        with TempStore(max_entries=keys, evict="lru") as t:
            for i in range(keys):
                t.store.set(f"old{i}", "v")
            # Reads record their access in ticks of 16 ms: read in a later tick than the writes.
            tick = now_ms() >> 4
            wait_until(lambda: now_ms() >> 4 != tick, "the next tick")
            self.assertEqual(t.store.get("old0"), "v")
            for i in range(keys - 1):
                t.store.set(f"new{i}", "v")  # the store is full: each set evicts one entry
            self.assertEqual(sorted(t.store.keys()), ["new0", "new1", "new2", "new3", "new4", "new5", "new6", "old0"])
            self.assertEqual((t.store.evictions, t.store.count, t.store.expired), (keys - 1, keys, 0))

    def test_a_store_without_eviction_still_refuses_a_set_when_full(self):
        with TempStore(max_entries=2) as t:
            t.store.set("a", "1")
            t.store.set("b", "2")
            with self.assertRaises(KvError) as caught:
                t.store.set("c", "3")
            self.assertEqual((caught.exception.code, t.store.evictions, sorted(t.store.keys())), ("TABLE_FULL", 0, ["a", "b"]))

    def test_a_full_store_without_eviction_makes_room_from_expired_entries(self):
        with TempStore(max_entries=2) as t:
            t.store.set("a", "1", ttl_ms=TTL_MS)
            t.store.set("b", "2")
            wait_until(lambda: t.store.get("a") is None, "a has expired")
            t.store.set("c", "3")
            self.assertEqual((sorted(t.store.keys()), t.store.expired, t.store.evictions), (["b", "c"], 1, 0))


if __name__ == "__main__":
    unittest.main()
