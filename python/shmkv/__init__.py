"""shmkv for Python: the shared-memory key-value store through its C library (ctypes, no dependency).

    from shmkv import KvStore

    with KvStore.open("/shared_memory_kv", create=True) as store:
        store.set("greeting", "héllo")
        print(store.get("greeting"))

The library is loaded from $KV_LIB_PATH, else the repository's build/libshared_memory_kv.so
(`make libso`). Guide: docs/python.md.
"""

from .errors import KvConflictError, KvError, code_of
from .store import Entry, KvStore, Status

__all__ = ["KvStore", "Entry", "Status", "KvError", "KvConflictError", "code_of"]
