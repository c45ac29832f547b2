"""KvError: every failure of the client, with the stable ``code`` the Bun binding gives the same failure."""

from ._codes import ERRNO_NAMES, RC, UNKNOWN_ERRNO_PREFIX

_CODE_BY_RC = {rc: code for code, rc in RC.items()}


def code_of(rc: int) -> str:
    """The stable code of a C return code: "TABLE_FULL", "EACCES", ... (as src/errors.ts codeOf)."""
    code = _CODE_BY_RC.get(rc)
    if code is not None:
        return code
    return ERRNO_NAMES.get(-rc, f"{UNKNOWN_ERRNO_PREFIX}{-rc}")


class KvError(Exception):
    """A failure. ``code`` is stable and meant for programs; the message is for people.

    ``rc`` is the C return code behind it, or 0 when the client raised it itself (CLOSED,
    LIBRARY_MISSING, INVALID_ARGUMENT for a value of the wrong type, ...).
    """

    def __init__(self, code: str, message: str, rc: int = 0):
        super().__init__(message)
        self.code = code
        self.rc = rc


class KvConflictError(KvError):
    """A conditional write (set_if, delete_if) found the entry at another revision; nothing was written.

    ``revision`` is the entry's revision when the write was tried: 0 when it was absent.
    """

    def __init__(self, message: str, revision: int):
        super().__init__("CONFLICT", message, RC["CONFLICT"])
        self.revision = revision
