"""Kernel-side bounds for bubblewrap sandboxes: a seccomp filter, and a size-limited,
nosuid/nodev filesystem for each work dir.

The seccomp program is classic BPF assembled here (no library needed: it is a few dozen
instructions). It refuses with EPERM what sandboxed code has no business doing and what has
been the way out of sandboxes before: new namespaces (user namespaces above all), mounts,
kernel keyrings, BPF, perf, io_uring, ptrace, module and kexec calls. ``clone3`` answers
ENOSYS, its flags being out of a filter's reach, so libc falls back to ``clone``, whose
namespace flags are checked.
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import struct
from pathlib import Path

log = logging.getLogger("matrix.sandbox")

# --- seccomp ---------------------------------------------------------------------------
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

_X86_64 = {
    "clone": 56, "clone3": 435,
    "denied": {
        "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
        "mount_setattr": 442, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
        "open_by_handle_at": 304, "name_to_handle_at": 303, "reboot": 169, "swapon": 167, "swapoff": 168,
        "acct": 163, "quotactl": 179, "syslog": 103, "iopl": 172, "ioperm": 173, "lookup_dcookie": 212,
        "vhangup": 153, "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "uselib": 134,
    },
}
_TABLES = {"x86_64": (_ARCH_X86_64, _X86_64)}
DENIED_SYSCALLS = sorted(_X86_64["denied"])


def seccomp_program(machine: str | None = None) -> bytes | None:
    """The filter as ``struct sock_filter[]`` bytes for bwrap's ``--seccomp FD``; None on an
    architecture it has no syscall table for."""
    arch = _TABLES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, table = arch
    code: list[tuple[int, int | str, int | str, int]] = []  # (op, jump-if-true, jump-if-false, k)

    def jump(op: int, k: int, target: str) -> None:
        code.append((op, target, 0, k))

    code.append((_LD_W_ABS, 0, 0, 4))  # seccomp_data.arch
    code.append((_JEQ, 1, 0, audit_arch))
    code.append((_RET, 0, 0, _RET_KILL_PROCESS))  # a foreign ABI: nothing to allow
    code.append((_LD_W_ABS, 0, 0, 0))  # seccomp_data.nr
    jump(_JGE, _X32_BIT, "eperm")  # the x32 ABI numbers the same calls differently
    jump(_JEQ, table["clone3"], "enosys")
    jump(_JEQ, table["clone"], "clone")
    for nr in sorted(table["denied"].values()):
        jump(_JEQ, nr, "eperm")
    code.append((_RET, 0, 0, _RET_ALLOW))
    labels = {"clone": len(code)}
    code.append((_LD_W_ABS, 0, 0, 16))  # low word of args[0]: clone's flags (little endian)
    jump(_JSET, _CLONE_NAMESPACES, "eperm")
    code.append((_RET, 0, 0, _RET_ALLOW))
    labels["eperm"] = len(code)
    code.append((_RET, 0, 0, _RET_ERRNO | errno.EPERM))
    labels["enosys"] = len(code)
    code.append((_RET, 0, 0, _RET_ERRNO | errno.ENOSYS))
    out = bytearray()
    for i, (op, jt, jf, k) in enumerate(code):
        if isinstance(jt, str):
            jt = labels[jt] - i - 1
        out += struct.pack("=HBBI", op, jt, jf, k)
    return bytes(out)


def seccomp_fd(program: bytes) -> int:
    """A fresh fd bwrap reads the program from (it reads to the end, so one per command)."""
    fd = os.memfd_create("matrix-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


# --- the work dir filesystem -----------------------------------------------------------
_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2
_libc = ctypes.CDLL(None, use_errno=True)


def mount_work(path: Path, size_bytes: int, uid: int | None) -> bool:
    """Mounts a tmpfs of ``size_bytes`` (and a bounded inode count) on ``path``, nosuid and
    nodev, owned by the sandbox's uid: a command that writes past the quota gets ENOSPC
    while it runs, and nothing it leaves there is setuid or a device on the host. False
    where mounting is not allowed (not root): the caller falls back to checking after."""
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    options = f"size={size_bytes},nr_inodes={max(1024, size_bytes >> 12)},mode=0700{owner}".encode()
    if _libc.mount(b"matrix-sandbox", str(path).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options) == 0:
        return True
    err = ctypes.get_errno()
    log.warning("sandbox work dirs are not size-limited filesystems here (mount: %s); the quota is checked after each command", os.strerror(err))
    return False


def unmount(path: Path) -> None:
    if _libc.umount2(str(path).encode(), _MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        log.warning("cannot unmount %s: %s", path, os.strerror(ctypes.get_errno()))


def unmount_below(root: Path) -> int:
    """Unmounts every mount at or below ``root`` (work dirs a dead runtime left mounted)."""
    prefix = str(root).rstrip("/") + "/"
    try:
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    except OSError:
        return 0
    # mountinfo escapes spaces as \040: the temp roots here never contain any.
    below = [p for p in points if p == prefix[:-1] or p.startswith(prefix)]
    for p in sorted(below, key=len, reverse=True):
        unmount(Path(p))
    return len(below)
