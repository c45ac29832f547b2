"""The one module that loads the C library (ctypes): where it is found and its signatures."""

import ctypes
import os
from pathlib import Path

from .errors import KvError

LIBRARY_FILE = "libshared_memory_kv.so"
_BUILD = Path(__file__).resolve().parents[2] / "build"

_c = ctypes
_p = _c.c_void_p
_size = _c.c_size_t
_SIGNATURES = {
    "kv_open": (_c.c_int, [_c.c_char_p, _c.c_int, _p, _c.POINTER(_p)]),
    "kv_close": (None, [_p]),
    "kv_unlink": (_c.c_int, [_c.c_char_p]),
    "kv_set_if_ttl": (_c.c_int, [_p, _c.c_char_p, _size, _c.c_char_p, _size, _c.c_uint64, _c.c_uint64,
                                 _c.POINTER(_c.c_uint64)]),
    "kv_incr_ttl": (_c.c_int, [_p, _c.c_char_p, _size, _c.c_int64, _c.c_uint64, _c.POINTER(_c.c_int64),
                               _c.POINTER(_c.c_uint64)]),
    "kv_get_meta": (_c.c_int, [_p, _c.c_char_p, _size, _p, _size, _p]),
    "kv_delete_if": (_c.c_int, [_p, _c.c_char_p, _size, _c.c_uint64, _c.POINTER(_c.c_uint64)]),
    "kv_expire": (_c.c_int, [_p, _c.c_uint32]),
    "kv_set_lock_timeout": (None, [_p, _c.c_int32]),
    "kv_repair": (_c.c_int, [_p]),
    "kv_copy_cell": (_c.c_uint32, [_p, _c.c_uint32, _p]),
    "kv_read_cell": (_c.c_int, [_p, _c.c_uint32, _p]),
    "kv_strerror": (_c.c_char_p, [_c.c_int]),
    "kv_base": (_p, [_p]),
    "kv_map_size": (_size, [_p]),
    "kv_max_entries": (_c.c_uint32, [_p]),
    "kv_key_max": (_c.c_uint32, [_p]),
    "kv_value_max": (_c.c_uint32, [_p]),
    "kv_memory_bytes": (_c.c_uint64, [_p]),
    "kv_readonly": (_c.c_int, [_p]),
    "kv_expired_total": (_c.c_uint64, [_p]),
    "kv_evictions_total": (_c.c_uint64, [_p]),
    "kv_hash": (_c.c_uint32, [_c.c_char_p, _size]),
}

_lib = None


def library_path() -> str:
    """$KV_LIB_PATH, else the repository's build/libshared_memory_kv.so."""
    return os.environ.get("KV_LIB_PATH") or str(_BUILD / LIBRARY_FILE)


def kv_lib() -> ctypes.CDLL:
    """The library, loaded on first use; LIBRARY_MISSING, naming the command to run, when it is not there."""
    global _lib
    if _lib is not None:
        return _lib
    path = library_path()
    if not os.path.exists(path):
        raise KvError("LIBRARY_MISSING", f"shmkv: the C library is missing at {path}: run `make libso` (or set KV_LIB_PATH)")
    try:
        lib = ctypes.CDLL(path)
        for name, (restype, argtypes) in _SIGNATURES.items():
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
    except (OSError, AttributeError) as error:
        raise KvError("LIBRARY_MISSING", f"shmkv: cannot load {path}: {error}: run `make libso` (or set KV_LIB_PATH)") from None
    _lib = lib
    return lib


def strerror(rc: int) -> str:
    return kv_lib().kv_strerror(rc).decode("utf-8", "replace")
