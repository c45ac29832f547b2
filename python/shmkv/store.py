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


class _Options(ctypes.Structure):
    """kv_options: geometry, mode and memory of a new segment; 0 takes the default."""

    _fields_ = [("max_entries", ctypes.c_uint32), ("key_max", ctypes.c_uint32),
                ("value_max", ctypes.c_uint32), ("mode", ctypes.c_uint32), ("memory_bytes", ctypes.c_uint64),
                ("evict", ctypes.c_uint32), ("reserved", ctypes.c_uint32)]


@dataclass(frozen=True)
class Entry:
    """One entry: str key and value, or bytes when read with raw=True."""

    key: Data
    value: Data
    revision: int
    timestamp: int  # Unix seconds of the entry's last write


@dataclass(frozen=True)
class Status:
    version: int
    entry_count: int
    max_entries: int
    key_max: int
    value_max: int
    entries: List[Entry]


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
             lock_timeout_ms: Optional[int] = None, check_owner: bool = False) -> "KvStore":
        """Open the store ``name`` ("/name").

        create: make it when missing, with max_entries, key_max, value_max, mode and memory_bytes
        (0: the default; an existing store keeps its own; memory_bytes: the bytes of its heap for
        keys and values, as kv_options documents). exclusive: with create, fail (EEXIST) when it
        exists. lock_timeout_ms: how long a call may wait for the write lock before STORE_BUSY
        (default: no limit; 0 never waits). check_owner: refuse (UNTRUSTED) a segment another
        user owns or others may write. Raises KvError: ENOENT, EEXIST, EACCES, INCOMPATIBLE, ...
        """
        lib = kv_lib()
        if not isinstance(name, str):
            raise KvError("INVALID_ARGUMENT", f"the store name must be a str, not {type(name).__name__}")
        options = _Options(max_entries, key_max, value_max, mode, memory_bytes)
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
        """The value of ``key`` with its revision and timestamp, or None. Never waits for a writer."""
        handle = self._live()
        k = _encode("key", key)
        if not k or b"\0" in k:
            self._fail(RC["INVALID_ARGUMENT"], f"cannot get {key!r}")
        if len(k) > self.key_max:
            self._fail(RC["KEY_TOO_LONG"], f"cannot get {key!r}")

        def parse(buffer, key_len, value_len):
            _, value, timestamp, revision = _segment.entry_fields(buffer, key_len, value_len)
            return Entry(_decode(k, raw), _decode(value, raw), revision, timestamp)

        found = self._segment.lookup(k, self._lib.kv_hash(k, len(k)), parse)
        if found is not _segment.TORN:
            return found
        # Writers overtook every lock-free try: the library's read, which may take the lock.
        length = ctypes.c_size_t()
        stamp = ctypes.c_int64()
        buffer, revision = ctypes.create_string_buffer(max(self.value_max, 1)), ctypes.c_uint64()
        rc = self._lib.kv_get_rev(handle, k, len(k), buffer, len(buffer), ctypes.byref(length),
                                  ctypes.byref(stamp), ctypes.byref(revision))
        if rc == RC["NOT_FOUND"]:
            return None
        if rc != 0:
            self._fail(rc, f"cannot get {key!r}")
        value = buffer.raw[:length.value]
        return Entry(_decode(k, raw), _decode(value, raw), revision.value, stamp.value)

    def keys(self, prefix: Data = "", *, raw: bool = False) -> List[Data]:
        """The keys that start with ``prefix``, in slot order; each read whole, never waiting for a writer."""
        start = _encode("prefix", prefix)
        self._live()
        segment = self._segment

        def parse(buffer, key_len, _value_len):
            key = _segment.key_bytes(buffer, key_len)
            return key if key.startswith(start) else None

        found = (segment.read(slot, parse) for slot in range(segment.high_water()))
        return [_decode(key, raw) for key in found if key is not None]

    def status(self, *, raw: bool = False) -> Status:
        """Version, counts, geometry and every entry in slot order.

        As the Bun binding's status: each entry is read whole, and the version and count are
        those when the read began (writes made during the read may show in the entries).
        """
        self._live()
        segment = self._segment
        version, count = segment.committed()

        def parse(buffer, key_len, value_len):
            key, value, timestamp, revision = _segment.entry_fields(buffer, key_len, value_len)
            return Entry(_decode(key, raw), _decode(value, raw), revision, timestamp)

        found = (segment.read(slot, parse) for slot in range(segment.high_water()))
        entries = [entry for entry in found if entry is not None]
        return Status(version, count, self.max_entries, self.key_max, self.value_max, entries)

    @property
    def version(self) -> int:
        """Successful writes (sets and deletes) since the store was created."""
        self._live()
        return self._segment.committed()[0]

    @property
    def count(self) -> int:
        self._live()
        return self._segment.committed()[1]

    # -- writes ----------------------------------------------------------------------------------

    def set(self, key: Data, value: Data) -> int:
        """Insert or replace ``key``. Returns the entry's new revision (the store's new version)."""
        return self._set(key, value, ANY_REVISION)

    def set_if(self, key: Data, value: Data, expected_revision: int) -> int:
        """Compare-and-set: write only when the entry is at ``expected_revision`` (0: only when absent).

        Returns the new revision; otherwise raises KvConflictError (with the revision found) and
        writes nothing.
        """
        return self._set(key, value, _revision(expected_revision))

    def delete(self, key: Data) -> bool:
        """Remove ``key``. Returns False when it was not there."""
        return self._delete(key, ANY_REVISION)

    def delete_if(self, key: Data, expected_revision: int) -> bool:
        """Remove ``key`` only when it is at ``expected_revision``; raises KvConflictError otherwise."""
        return self._delete(key, _revision(expected_revision))

    def _set(self, key: Data, value: Data, expected: int) -> int:
        handle = self._live()
        k, v = _encode("key", key), _encode("value", value)
        revision = ctypes.c_uint64()
        rc = self._lib.kv_set_if(handle, k, len(k), v, len(v), expected, ctypes.byref(revision))
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


def _conflict(action: str, key: Data, expected: int, found: int) -> KvConflictError:
    if found == 0:
        state = "it does not exist"
    elif expected == 0:
        state = f"it exists (revision {found})"
    else:
        state = f"it is at revision {found}"
    wanted = "" if expected == 0 else f" (expected revision {expected})"
    return KvConflictError(f"cannot {action} {key!r}: {state}{wanted}", found)
