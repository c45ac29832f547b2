"""KvStore: a handle on one shmkv segment, through the C library (ctypes)."""

import ctypes
import errno
import os
from dataclasses import dataclass
from typing import List, Optional, Union

from . import _segment
from ._codes import RC
from ._lib import kv_lib
from .errors import KvConflictError, KvError, code_of

Data = Union[str, bytes]

KV_CREATE = 1
KV_EXCL = 2
KV_CHECK_OWNER = 4
ANY_REVISION = 2**64 - 1  # KV_ANY_REVISION
_INT32_MAX = 2**31 - 1
_INT64 = range(-(2**63), 2**63)
# kv_options.evict: KV_EVICT_NONE, KV_EVICT_LRU (0, the default, makes a store that evicts nothing).
_EVICT = {"none": 1, "lru": _segment.EVICT_LRU}


class _Options(ctypes.Structure):
    """kv_options: geometry, mode and memory of a new segment; 0 takes the default."""

    _fields_ = [("max_entries", ctypes.c_uint32), ("key_max", ctypes.c_uint32),
                ("value_max", ctypes.c_uint32), ("mode", ctypes.c_uint32), ("memory_bytes", ctypes.c_uint64),
                ("evict", ctypes.c_uint32), ("lock_timeout_ms", ctypes.c_uint32)]


class _Meta(ctypes.Structure):
    """kv_meta: what kv_get_meta reports besides the value."""

    _fields_ = [("value_len", ctypes.c_uint64), ("timestamp", ctypes.c_int64), ("revision", ctypes.c_uint64),
                ("expires_at_ms", ctypes.c_uint64)]


@dataclass(frozen=True)
class Entry:
    """One entry: str key and value, or bytes when read with raw=True."""

    key: Data
    value: Data
    revision: int
    timestamp: int  # Unix seconds of the entry's last write
    expires_at: Optional[float] = None  # Unix seconds (to the millisecond) when it expires; None: never


@dataclass(frozen=True)
class Status:
    version: int
    entry_count: int  # live entries, and expired ones not reclaimed yet
    max_entries: int
    key_max: int
    value_max: int
    entries: List[Entry]  # expired entries left out
    evict: str = "none"  # the eviction policy: "none" or "lru"


def _entry(key: bytes, value: bytes, revision: int, timestamp: int, expires_at_ms: int, raw: bool) -> Entry:
    expires_at = expires_at_ms / 1000 if expires_at_ms else None
    return Entry(_decode(key, raw), _decode(value, raw), revision, timestamp, expires_at)


def _encode(what: str, data: Data) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise KvError("INVALID_ARGUMENT", f"the {what} must be str or bytes, not {type(data).__name__}")


def _decode(data: bytes, raw: bool) -> Data:
    # As the Bun binding decodes: bytes that are not UTF-8 become U+FFFD. raw=True keeps them.
    return data if raw else data.decode("utf-8", "replace")


class KvStore:
    """A store: ``with KvStore.open("/name", create=True) as store: store.set("k", "v")``.

    Reads (get, get_entry, keys, status) never wait for a writer: they copy slots lock-free and
    validate them with the segment's counters (python/shmkv/_segment.py). Writes take the lock.
    Every failure is a KvError with a stable ``code``.
    """

    def __init__(self, name: str, created: bool, lib, handle, check: int = 0):
        self.name = name
        self.created = created  # True when this open created the segment
        self._lib = lib
        self._check = check
        self._lock_timeout_ms: Optional[int] = None
        # Handles of segments a resize replaced: another thread may still be reading through one.
        self._retired: list = []
        self._attach(handle)

    def _attach(self, handle) -> None:
        """Read through `handle`'s mapping: its geometry, its views, the file it is."""
        lib = self._lib
        self._handle = handle
        self._inode = _inode(self.name)
        self.max_entries = lib.kv_max_entries(handle)
        self.key_max = lib.kv_key_max(handle)
        self.value_max = lib.kv_value_max(handle)
        self._fail = _segment.fail_with(lib)
        self._segment = _segment.Segment(lib, handle, self.max_entries, self.key_max, self.value_max, self._fail)

    @classmethod
    def open(cls, name: str, create: bool = False, *, exclusive: bool = False, max_entries: int = 0,
             key_max: int = 0, value_max: int = 0, mode: int = 0, memory_bytes: int = 0,
             evict: Optional[str] = None, lock_timeout_ms: Optional[int] = None,
             check_owner: bool = False) -> "KvStore":
        """Open the store ``name`` ("/name").

        create: make it when missing, with max_entries, key_max, value_max, mode, memory_bytes and
        evict (0 or None: the default; an existing store keeps its own; memory_bytes: the bytes of
        its heap for keys and values, as kv_options documents; evict: "none", a full store refuses
        sets with TABLE_FULL, or "lru", a set evicts the least recently used entries until it fits).
        exclusive: with create, fail (EEXIST) when it exists. lock_timeout_ms: how long a call may
        wait for the write lock before STORE_BUSY (default: no limit; 0 never waits). check_owner:
        refuse (UNTRUSTED) a segment another user owns or others may write. Raises KvError:
        ENOENT, EEXIST, EACCES, INCOMPATIBLE, ...
        """
        lib = kv_lib()
        if not isinstance(name, str):
            raise KvError("INVALID_ARGUMENT", f"the store name must be a str, not {type(name).__name__}")
        if evict is not None and evict not in _EVICT:
            raise KvError("INVALID_ARGUMENT", f"evict must be \"none\" or \"lru\", not {evict!r}")
        options = _Options(max_entries, key_max, value_max, mode, memory_bytes, _EVICT.get(evict, 0), 0)
        cname = name.encode("utf-8")
        check = KV_CHECK_OWNER if check_owner else 0
        handle = ctypes.c_void_p()
        created = False
        # Open first, so we know whether this call is the one that created the segment.
        rc = -errno.ENOENT if exclusive else lib.kv_open(cname, check, ctypes.byref(options), ctypes.byref(handle))
        if rc == -errno.ENOENT and create:
            rc = lib.kv_open(cname, KV_CREATE | KV_EXCL | check, ctypes.byref(options), ctypes.byref(handle))
            created = rc == 0
            if rc == -errno.EEXIST and not exclusive:  # another process created it meanwhile
                rc = lib.kv_open(cname, check, ctypes.byref(options), ctypes.byref(handle))
        if rc != 0:
            raise KvError(code_of(rc), f"cannot open {name}: {lib.kv_strerror(rc).decode()}", rc)
        store = cls(name, created, lib, handle, check)
        if lock_timeout_ms is not None:
            store._lock_timeout_ms = min(int(lock_timeout_ms), _INT32_MAX)
            lib.kv_set_lock_timeout(handle, store._lock_timeout_ms)
        if store._segment.layout_version != _segment.LAYOUT_VERSION:
            store.close()
            raise KvError("INCOMPATIBLE", f"cannot open {name}: its layout is not the one this client reads",
                          RC["INCOMPATIBLE"])
        return store

    @staticmethod
    def unlink(name: str) -> None:
        """Remove the name. Processes that have the store open keep using it."""
        lib = kv_lib()
        rc = lib.kv_unlink(name.encode("utf-8"))
        if rc != 0:
            raise KvError(code_of(rc), f"cannot unlink {name}: {lib.kv_strerror(rc).decode()}", rc)

    # -- reads -----------------------------------------------------------------------------------

    def get(self, key: Data, *, raw: bool = False) -> Optional[Data]:
        """The value of ``key`` (str; bytes with raw=True), or None. Never waits for a writer."""
        entry = self.get_entry(key, raw=raw)
        return None if entry is None else entry.value

    def get_entry(self, key: Data, *, raw: bool = False) -> Optional[Entry]:
        """The value of ``key`` with its revision, timestamp and expiry, or None (also once it has
        expired). Never waits for a writer."""
        handle = self._live()
        k = _encode("key", key)
        if not k or b"\0" in k:
            self._fail(RC["INVALID_ARGUMENT"], f"cannot get {key!r}")
        if len(k) > self.key_max:
            self._fail(RC["KEY_TOO_LONG"], f"cannot get {key!r}")

        def parse(buffer, key_len, value_len):
            _, value, timestamp, revision, expires_at_ms = _segment.entry_fields(buffer, key_len, value_len)
            return _entry(k, value, revision, timestamp, expires_at_ms, raw)

        found = self._segment.lookup(k, self._lib.kv_hash(k, len(k)), parse, _segment.now_ms())
        if found is not _segment.TORN:
            return found
        # Writers overtook every lock-free try: the library's read, which may take the lock.
        buffer, meta = ctypes.create_string_buffer(max(self.value_max, 1)), _Meta()
        rc = self._lib.kv_get_meta(handle, k, len(k), buffer, len(buffer), ctypes.byref(meta))
        if rc == RC["NOT_FOUND"]:
            return None
        if rc != 0:
            self._fail(rc, f"cannot get {key!r}")
        return _entry(k, buffer.raw[:meta.value_len], meta.revision, meta.timestamp, meta.expires_at_ms, raw)

    def keys(self, prefix: Data = "", *, raw: bool = False) -> List[Data]:
        """The keys that start with ``prefix``, in slot order; each read whole, never waiting for a writer."""
        start = _encode("prefix", prefix)
        self._live()
        segment = self._segment

        def parse(buffer, key_len, _value_len):
            key = _segment.key_bytes(buffer, key_len)
            return key if key.startswith(start) else None

        now = _segment.now_ms()
        found = (segment.read(slot, parse, now) for slot in range(segment.high_water()))
        return [_decode(key, raw) for key in found if key is not None]

    def status(self, *, raw: bool = False) -> Status:
        """Version, counts, geometry, eviction policy and every entry in slot order.

        As the Bun binding's status: each entry is read whole, and the version and count are
        those when the read began (writes made during the read may show in the entries). Entries
        expired when the read began are left out; the count includes them until they are reclaimed.
        """
        self._live()
        segment = self._segment
        version, count = segment.committed()

        def parse(buffer, key_len, value_len):
            key, value, timestamp, revision, expires_at_ms = _segment.entry_fields(buffer, key_len, value_len)
            return _entry(key, value, revision, timestamp, expires_at_ms, raw)

        now = _segment.now_ms()
        found = (segment.read(slot, parse, now) for slot in range(segment.high_water()))
        entries = [entry for entry in found if entry is not None]
        return Status(version, count, self.max_entries, self.key_max, self.value_max, entries, self.evict)

    @property
    def version(self) -> int:
        """Successful writes (sets and deletes) since the store was created."""
        self._live()
        return self._segment.committed()[0]

    @property
    def count(self) -> int:
        """Live entries, and expired ones not reclaimed yet (by a write meeting them, or expire())."""
        self._live()
        return self._segment.committed()[1]

    @property
    def evict(self) -> str:
        """The eviction policy the store was created with: "none" or "lru"."""
        self._live()
        return "lru" if self._segment.evict_policy() == _segment.EVICT_LRU else "none"

    @property
    def expired(self) -> int:
        """Entries reclaimed because they had expired, since the store was created."""
        return self._lib.kv_expired_total(self._live())

    @property
    def evictions(self) -> int:
        """Entries evicted to make room for a set (evict="lru"), since the store was created."""
        return self._lib.kv_evictions_total(self._live())

    # -- writes ----------------------------------------------------------------------------------

    def set(self, key: Data, value: Data, *, ttl_ms: Optional[int] = None) -> int:
        """Insert or replace ``key``. Returns the entry's new revision (the store's new version).

        ttl_ms: the entry expires that many milliseconds from now (None or 0: never; a set without
        it clears the expiry the entry had). Once expired it is absent to every reader at once.
        """
        return self._set(key, value, ANY_REVISION, ttl_ms)

    def set_if(self, key: Data, value: Data, expected_revision: int, *, ttl_ms: Optional[int] = None) -> int:
        """Compare-and-set: write only when the entry is at ``expected_revision`` (0: only when absent,
        or expired). ttl_ms as for set.

        Returns the new revision; otherwise raises KvConflictError (with the revision found) and
        writes nothing.
        """
        return self._set(key, value, _revision(expected_revision), ttl_ms)

    def incr(self, key: Data, by: int = 1, *, ttl_ms: Optional[int] = None) -> int:
        """Add ``by`` to the decimal integer ``key`` holds, atomically across processes, and return
        the sum. A missing (or expired) key counts as 0 and is created, expiring after ttl_ms when
        given; an existing counter keeps its expiry. Nothing is written on NOT_A_NUMBER (the value
        is not a decimal integer within int64) or ERANGE (the sum would leave int64).
        """
        handle = self._live()
        k = _encode("key", key)
        if isinstance(by, bool) or not isinstance(by, int) or by not in _INT64:
            raise KvError("INVALID_ARGUMENT", f"an increment must be an int within int64, not {by!r}")
        result = ctypes.c_int64()
        rc = self._lib.kv_incr_ttl(handle, k, len(k), by, _ttl(ttl_ms), ctypes.byref(result), None)
        if rc != 0:
            self._fail(rc, f"cannot increment {key!r} by {by}")
        return result.value

    def expire(self, max_slots: int = 1024) -> int:
        """Reclaim the expired entries among the next ``max_slots`` slots (kv_expire: a bounded sweep
        under the lock, as the server runs every 100 ms); returns how many it reclaimed. Expired
        entries are absent to readers either way: this gives their slots and memory back."""
        handle = self._live()
        if isinstance(max_slots, bool) or not isinstance(max_slots, int) or not 0 <= max_slots < 2**32:
            raise KvError("INVALID_ARGUMENT", f"max_slots must be an int from 0 to 2^32 - 1, not {max_slots!r}")
        rc = self._lib.kv_expire(handle, max_slots)
        if rc < 0:
            self._fail(rc, "cannot expire")
        return rc

    def delete(self, key: Data) -> bool:
        """Remove ``key``. Returns False when it was not there."""
        return self._delete(key, ANY_REVISION)

    def delete_if(self, key: Data, expected_revision: int) -> bool:
        """Remove ``key`` only when it is at ``expected_revision``; raises KvConflictError otherwise."""
        return self._delete(key, _revision(expected_revision))

    def _set(self, key: Data, value: Data, expected: int, ttl_ms: Optional[int]) -> int:
        handle = self._live()
        k, v = _encode("key", key), _encode("value", value)
        revision = ctypes.c_uint64()
        rc = self._lib.kv_set_if_ttl(handle, k, len(k), v, len(v), expected, _ttl(ttl_ms), ctypes.byref(revision))
        if rc == RC["CONFLICT"]:
            raise _conflict("set", key, expected, revision.value)
        if rc != 0:
            self._fail(rc, f"cannot set {key!r}")
        return revision.value

    def _delete(self, key: Data, expected: int) -> bool:
        handle = self._live()
        k = _encode("key", key)
        revision = ctypes.c_uint64()
        rc = self._lib.kv_delete_if(handle, k, len(k), expected, ctypes.byref(revision))
        if rc == RC["NOT_FOUND"]:
            return False
        if rc == RC["CONFLICT"]:
            raise _conflict("delete", key, expected, revision.value)
        if rc != 0:
            self._fail(rc, f"cannot delete {key!r}")
        return True

    # -- lifetime --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Unmap the store (never unlinks). Idempotent; afterwards every other method raises CLOSED."""
        handle, self._handle = self._handle, None
        if handle is not None:
            for old in [handle, *self._retired]:
                self._lib.kv_close(old)
            self._retired.clear()

    def __enter__(self) -> "KvStore":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            self.close()

    def _live(self):
        if self._handle is None:
            raise KvError("CLOSED", f"store {self.name} is closed")
        if self._segment.flags() & (_segment.SUPERSEDED | _segment.RESIZING):
            self._follow()
        return self._handle

    def _follow(self) -> None:
        """Follow a resize (kv_resize): its copy now has the name, so open the name again.

        The library's own calls follow by themselves, but the lock-free reads here read this
        handle's mapping, which a resize leaves as it was. While the copy is being made (RESIZING)
        the old segment is still the store, until the copy is renamed over the name.
        """
        if not self._segment.flags() & _segment.SUPERSEDED and _inode(self.name) == self._inode:
            return
        fresh = ctypes.c_void_p()
        rc = self._lib.kv_open(self.name.encode("utf-8"), self._check, None, ctypes.byref(fresh))
        if rc != 0:
            self._fail(rc, f"cannot follow {self.name} after a resize")
        if self._lock_timeout_ms is not None:
            self._lib.kv_set_lock_timeout(fresh, self._lock_timeout_ms)
        self._retired.append(self._handle)
        self._attach(fresh)


def _inode(name: str) -> int:
    """The inode the name leads to now (0 when it leads nowhere)."""
    try:
        return os.stat(f"/dev/shm{name}").st_ino
    except OSError:
        return 0


def _revision(expected: int) -> int:
    if isinstance(expected, bool) or not isinstance(expected, int) or not 0 <= expected < ANY_REVISION:
        raise KvError("INVALID_ARGUMENT", f"expected_revision must be an int from 0, not {expected!r}")
    return expected


def _ttl(ttl_ms: Optional[int]) -> int:
    if ttl_ms is None:
        return 0
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or not 0 <= ttl_ms < 2**64:
        raise KvError("INVALID_ARGUMENT", f"ttl_ms must be an int of milliseconds from 0, not {ttl_ms!r}")
    return ttl_ms


def _conflict(action: str, key: Data, expected: int, found: int) -> KvConflictError:
    if found == 0:
        state = "it does not exist"
    elif expected == 0:
        state = f"it exists (revision {found})"
    else:
        state = f"it is at revision {found}"
    wanted = "" if expected == 0 else f" (expected revision {expected})"
    return KvConflictError(f"cannot {action} {key!r}: {state}{wanted}", found)
