"""Lock-free reads of the segment (a key, status, keys), as src/layout.ts and src/store.ts read it.

They follow the segment's layout (csrc/shared_memory_kv.h, "Segment layout" and "Reading without
the lock"). Each slot is copied by kv_copy_cell: the 64-byte entry, then its key and value from its
chunk in the heap (layout 2), the chunk's offset bounds-checked in C and again here, the copy
validated by the entry's own counter (which a rewrite moves, so a chunk freed and reused meanwhile is
never returned); the copy is then checked against the index counter (inserts and deletes). A write in progress, even
one whose writer is stopped, is read around: the undo record holds the slot as it was (kv_copy_cell
copies it with its key and value: a write frees the old chunk only once it is complete), validated by
the store's counter staying at its odd value. So no read waits for a writer: only when writers
overtake READ_ATTEMPTS reads in a row does a read fall back to the library's locked read (kv_get_rev,
kv_read_cell), within the handle's lock timeout. (kv_get_rev alone would take the lock as soon as a
stopped writer left the index counter odd.)

An entry whose expires_at_ms (a field of the copy) is not 0 and not after the reader's clock
(CLOCK_REALTIME ms, as the writers' and every other reader's) is absent, whatever its slot still
holds: a lookup answers None for it and a listing skips it. A lookup that finds its key in a store
whose eviction policy is lru stamps the entry's last-access tick (ms / 16, a plain aligned 32-bit
store in the segment, outside every counter), only when the stored tick differs, so a key read
often dirties its cache line once per tick; listings leave it alone.

The counters are read as aligned 32-bit loads from Python: loads are not reordered with loads on
x86-64, the hosts the project supports; the copies themselves are made in C, with its fences.
"""

import ctypes
import struct
import threading
import time
from typing import Callable, Optional, TypeVar

from .errors import KvError, code_of

LAYOUT_VERSION = 2
READ_ATTEMPTS = 64  # KV_READ_SPINS
RING_CELLS = 256  # KV_RING_CELLS: kv_copy_cell's cell max_entries + RING_CELLS is the undo record's entry

# Header fields (byte offsets).
_LAYOUT = 4
_ENTRIES = 40
_SEQ = 56
_ENTRY_COUNT = 60
_VERSION = 64
_HIGH_WATER = 76
_INDEX_SEQ = 108
_FLAGS = 120
_UNDO_STATE = 192
_UNDO_SLOT = 196
_UNDO_ENTRY_COUNT = 200
_UNDO_VERSION = 216
_UNDO_ARMED = 1
_EVICT_POLICY = 536
EVICT_LRU = 2  # KV_EVICT_LRU; 0 and 1 (KV_EVICT_NONE) evict nothing
SUPERSEDED = 2  # header flags: a resize put a copy in place of this segment
RESIZING = 4  # header flags: a resize is copying it; the copy takes over once renamed over the name
_HEADER_SIZE = 12
_INDEX_CELLS = 36
# Entry fields, and where a copy of a cell has the entry's key (its value follows the key).
_ENTRY_SIZE = 64
_HASH = 8
_CHUNK = 32
_LAST_ACCESS = 44
_EXPIRES_AT = 48
_CHUNK_HEAD = 8  # bytes of a heap chunk before its key
_DATA = 64

TORN = object()
EXPIRED = object()  # _parsed: an entry whose expiry has passed, absent to every read
T = TypeVar("T")


class Segment:
    def __init__(self, lib, handle, max_entries: int, key_max: int, value_max: int, fail: Callable[[int, str], None]):
        self._lib = lib
        self._handle = handle
        self.max_entries = max_entries
        self.key_max = key_max
        self.value_max = value_max
        self._fail = fail
        # A copy of a cell: the entry, then at most key_max + value_max bytes of key and value.
        self.entry_size = (_DATA + key_max + value_max + 7) // 8 * 8
        self.heap_size = lib.kv_memory_bytes(handle)
        self._undo_cell = max_entries + RING_CELLS
        self._base = lib.kv_base(handle)
        u32 = lambda off: ctypes.c_uint32.from_address(self._base + off)  # noqa: E731 (a live view)
        u64 = lambda off: ctypes.c_uint64.from_address(self._base + off)  # noqa: E731
        self.layout_version = u32(_LAYOUT).value
        self._seq = u32(_SEQ)
        self._index_seq = u32(_INDEX_SEQ)
        self._entry_count = u32(_ENTRY_COUNT)
        self._version = u64(_VERSION)
        self._high_water = u32(_HIGH_WATER)
        self._flags = u32(_FLAGS)
        self._undo_state = u32(_UNDO_STATE)
        self._undo_slot = u32(_UNDO_SLOT)
        self._undo_entry_count = u32(_UNDO_ENTRY_COUNT)
        self._undo_version = u64(_UNDO_VERSION)
        self._evict_policy = u32(_EVICT_POLICY)
        # Every entry's u32 fields, for the last-access stamp of entry `slot`.
        per_entry = _ENTRY_SIZE // 4
        self._entry_words = (ctypes.c_uint32 * (max_entries * per_entry)).from_address(self._base + u64(_ENTRIES).value)
        self._last_access = _LAST_ACCESS // 4
        self._per_entry = per_entry
        # Each thread copies into a buffer of its own: ctypes lets other threads run during a C call.
        self._local = threading.local()
        # The index: u32 cells, 0 or slot + 1 (its place and size were validated by kv_open).
        cells = u32(_INDEX_CELLS).value
        self._index = (ctypes.c_uint32 * cells).from_address(self._base + u32(_HEADER_SIZE).value)
        self._mask = cells - 1

    def flags(self) -> int:
        return self._flags.value

    def evict_policy(self) -> int:
        return self._evict_policy.value

    def _touch(self, slot: int, now_ms: int) -> None:
        """Stamp entry ``slot``'s last access with now's tick, for LRU eviction, when it differs."""
        if self._evict_policy.value == EVICT_LRU:
            tick = (now_ms >> 4) & 0xFFFFFFFF
            word = slot * self._per_entry + self._last_access
            if self._entry_words[word] != tick:
                self._entry_words[word] = tick

    def committed(self):
        """(version, entry_count) as of the last committed write, never waiting for a writer."""
        for round_ in range(2):
            for _ in range(READ_ATTEMPTS):
                seq = self._seq.value
                undone = bool(seq & 1) and self._undo_state.value == _UNDO_ARMED
                version = (self._undo_version if undone else self._version).value
                count = (self._undo_entry_count if undone else self._entry_count).value
                if self._seq.value == seq:
                    return version, count
            if round_ == 0:
                # A writer that died mid-write leaves the counter odd and the record disarmed: repair.
                rc = self._lib.kv_repair(self._handle)
                if rc != 0:
                    self._fail(rc, "cannot read the store")
        raise KvError("STORE_BUSY", "cannot read the store: writers overtook every attempt", -30989)

    @property
    def _buffer(self):
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = ctypes.create_string_buffer(self.entry_size)
        return buffer

    def high_water(self) -> int:
        return min(self._high_water.value, self.max_entries)

    def read(self, slot: int, parse: Callable[..., T], now_ms: int) -> Optional[T]:
        """``parse`` of slot ``slot`` as of a committed state; None for a free slot or an entry
        expired at ``now_ms``."""
        for _ in range(READ_ATTEMPTS):
            result = self._read_slot(slot, parse, now_ms)
            if result is not TORN:
                return None if result is EXPIRED else result
        rc = self._lib.kv_read_cell(self._handle, slot, self._buffer)
        if rc != 0:
            self._fail(rc, "cannot read the store")
        result = self._parsed(self._buffer.raw, parse, now_ms)
        return None if result is EXPIRED else result

    def _read_slot(self, slot, parse, now_ms):
        index = self._index_seq.value
        if not index & 1:
            counter = self._lib.kv_copy_cell(self._handle, slot, self._buffer)
            raw = self._buffer.raw
            if struct.unpack_from("<I", raw)[0] == 0:  # a free slot; its counter field is a link
                return None if self._index_seq.value == index else TORN
            if not counter & 1:  # kv_copy_cell validated the copy by the entry's own counter
                result = self._parsed(raw, parse, now_ms)
                return result if self._index_seq.value == index else TORN
        return self._during_write(slot, parse, now_ms)

    def _during_write(self, slot, parse, now_ms):
        seq = self._seq.value
        if not seq & 1:
            return TORN  # it has just ended: read again the usual way
        armed = self._undo_slot.value == slot and self._undo_state.value == _UNDO_ARMED
        self._lib.kv_copy_cell(self._handle, self._undo_cell if armed else slot, self._buffer)
        raw = self._buffer.raw
        result = self._parsed(raw, parse, now_ms)
        return result if self._seq.value == seq else TORN

    def lookup(self, key: bytes, hash_: int, parse: Callable[..., T], now_ms: int):
        """``parse`` of the entry of ``key`` as of a committed state, None when absent or expired at
        ``now_ms``; TORN after READ_ATTEMPTS overtaken tries (the caller then asks the library,
        which may lock). A live entry found has its last access stamped (lru stores)."""
        for _ in range(READ_ATTEMPTS):
            index = self._index_seq.value
            if not index & 1:
                slot, raw = self._find(key, hash_)
                if slot < 0:
                    if self._index_seq.value == index:
                        return None
                else:
                    counter = self._lib.kv_copy_cell(self._handle, slot, self._buffer)
                    raw = self._buffer.raw
                    if not counter & 1 and raw[_DATA:_DATA + len(key)] == key:
                        result = self._parsed(raw, parse, now_ms)
                        if self._index_seq.value == index:
                            return self._found(slot, result, now_ms)
            slot, result = self._lookup_during_write(key, hash_, parse, now_ms)
            if result is not TORN:
                return self._found(slot, result, now_ms)
        return TORN

    def _found(self, slot, result, now_ms):
        if result is None or result is EXPIRED:
            return None
        self._touch(slot, now_ms)
        return result

    def _lookup_during_write(self, key, hash_, parse, now_ms):
        """While a write is in progress: (slot, result), valid while the store's counter stays at
        its odd value."""
        seq = self._seq.value
        if not seq & 1:
            return -1, TORN
        index = self._index_seq.value
        slot, raw = self._find(key, hash_)
        result = TORN
        if slot >= 0:
            if self._undo_slot.value == slot and self._undo_state.value == _UNDO_ARMED:
                self._lib.kv_copy_cell(self._handle, self._undo_cell, self._buffer)
                raw = self._buffer.raw
            if struct.unpack_from("<I", raw)[0] == 0:
                result = None  # the undo record's copy of a slot an insert is filling: absent
            else:
                parsed = self._parsed(raw, parse, now_ms)
                result = TORN if parsed is None else parsed
        elif not index & 1:
            result = None  # absence is trusted only while no delete moves the index's cells
        valid = self._seq.value == seq and self._index_seq.value == index
        return slot, result if valid else TORN

    def _find(self, key: bytes, hash_: int):
        """(slot, its copy) of ``key`` by the index, or (-1, None). Bounded, whatever the index holds."""
        pos = hash_ & self._mask
        for _ in range(self._mask + 1):
            cell = self._index[pos]
            if cell == 0:
                return -1, None
            slot = cell - 1
            if slot < self.max_entries:
                self._lib.kv_copy_cell(self._handle, slot, self._buffer)
                raw = self._buffer.raw
                key_len, _, stored_hash = struct.unpack_from("<III", raw)
                if stored_hash == hash_ and key_len == len(key) and raw[_DATA:_DATA + key_len] == key:
                    return slot, raw
            pos = (pos + 1) & self._mask
        return -1, None

    def _parsed(self, raw: bytes, parse, now_ms: int):
        """``parse`` of a copied entry; None for a free slot or damage; EXPIRED for an entry
        expired at ``now_ms``."""
        key_len, value_len = struct.unpack_from("<II", raw)
        if key_len == 0 or key_len > self.key_max or value_len > self.value_max:
            return None  # free, or lengths no committed entry has (damage): nothing to list
        # kv_copy_cell leaves the key and value out when the chunk does not fit the heap: then the
        # bytes after the entry are an older copy's, never to be returned.
        chunk = struct.unpack_from("<Q", raw, _CHUNK)[0]
        if chunk >= self.heap_size or _CHUNK_HEAD + key_len + value_len > self.heap_size - chunk:
            return None
        expires_at_ms = struct.unpack_from("<Q", raw, _EXPIRES_AT)[0]
        if expires_at_ms != 0 and now_ms >= expires_at_ms:
            return EXPIRED
        return parse(raw, key_len, value_len)


def entry_fields(raw: bytes, key_len: int, value_len: int):
    """(key, value, timestamp, revision, expires_at_ms) of a copied entry, as bytes and integers."""
    timestamp, revision = struct.unpack_from("<qQ", raw, 16)
    expires_at_ms = struct.unpack_from("<Q", raw, _EXPIRES_AT)[0]
    key = raw[_DATA:_DATA + key_len]
    value = raw[_DATA + key_len:_DATA + key_len + value_len]
    return key, value, timestamp, revision, expires_at_ms


def now_ms() -> int:
    """The clock expiry is measured by: CLOCK_REALTIME in milliseconds, as the library's."""
    return time.time_ns() // 1_000_000


def key_bytes(raw: bytes, key_len: int) -> bytes:
    return raw[_DATA:_DATA + key_len]


def fail_with(lib) -> Callable[[int, str], None]:
    def fail(rc: int, context: str) -> None:
        raise KvError(code_of(rc), f"{context}: {lib.kv_strerror(rc).decode()}", rc)

    return fail
