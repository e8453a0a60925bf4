"""Run a command under the unit's system call filter, as systemd would apply it.

`python -m tests.support.seccomp_exec CMD...`: the allow list is the unit's `SystemCallFilter=` lines,
resolved by `systemd-analyze syscall-filter` (so the groups are this systemd's), loaded with
libseccomp through ctypes; a call outside it fails with EPERM (the unit's SystemCallErrorNumber).
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys

from tests.support import paths

UNIT = paths.REPO / "systemd" / "tollway.service"
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000


def members(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a group (`@system-service`), nested groups resolved."""
    seen = set() if seen is None else seen
    if group in seen:
        return set()
    seen.add(group)
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True
    ).stdout
    calls: set[str] = set()
    for line in text.splitlines():
        name = line.strip()
        if not line.startswith("    ") or not name or name.startswith("#"):
            continue
        calls |= members(name, seen) if name.startswith("@") else {name}
    return calls


def allowed() -> set[str]:
    """The unit's filter: the union of its allow lines less its `~` lines."""
    allow: set[str] = set()
    deny: set[str] = set()
    for line in UNIT.read_text().splitlines():
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1]
        target = deny if value.startswith("~") else allow
        for name in value.lstrip("~").split():
            target |= members(name) if name.startswith("@") else {name}
    return allow - deny


def install(calls: set[str]) -> None:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    context = lib.seccomp_init(SCMP_ACT_ERRNO | errno.EPERM)
    for name in sorted(calls):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number >= 0:  # a call this architecture does not have is skipped, as systemd does
            assert lib.seccomp_rule_add(context, SCMP_ACT_ALLOW, number, 0) == 0, name
    assert lib.seccomp_load(context) == 0


if __name__ == "__main__":
    calls = allowed()
    install(calls)
    os.execvp(sys.argv[1], sys.argv[1:])
