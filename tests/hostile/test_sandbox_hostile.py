"""Hostile code in the bubblewrap sandbox (runtime=sandbox): each attempt must fail inside,
and the host must be as it was. In-process runtime, no Ray."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from matrix_plugin_sandbox import BubblewrapRuntime, usage_bytes
from matrix_plugin_sandbox._hardening import DENIED_SYSCALLS

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (apt-get install -y bubblewrap)")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="per-sandbox uids and mounted work dirs are the root mode")

QUOTA_MB = 64


class Box:
    def __init__(self, tmp_path, **cfg):
        self.loop = asyncio.new_event_loop()
        self.rt = BubblewrapRuntime({"temp_root": str(tmp_path), "max_sandboxes": 2, "timeout_s": 60, "work_quota_mb": QUOTA_MB, **cfg})
        self.run(self.rt.start())
        self.run(self.rt.create("box"))
        self.work: Path = self.rt.boxes["box"]["work"]

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def sh(self, command, **kw):
        return self.run(self.rt.exec("box", command, **kw))

    def py(self, code, **kw):
        self.run(self.rt.write_file("box", "t.py", code.encode()))
        return self.sh(["python3", "t.py"], **kw)

    def close(self):
        self.run(self.rt.close())
        self.loop.close()


@pytest.fixture
def box(tmp_path):
    b = Box(tmp_path)
    yield b
    b.close()


def _mount_options(mountinfo: str, point: str) -> set[str]:
    for line in mountinfo.splitlines():
        fields = line.split()
        if fields[4] == point:
            return set(fields[5].split(","))
    raise AssertionError(f"{point} is not a mount point:\n{mountinfo}")


@as_root
def test_one_command_cannot_put_more_than_the_quota_on_the_host(box):
    """858 MiB in 15 MB files (each under max_file_mb) by one command: stopped at the quota
    while it runs, never after; the host side of the work dir never holds more."""
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], usage_bytes(box.work))
            stop.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        r = box.sh("for i in $(seq 1 60); do head -c 15000000 /dev/zero > f$i || break; done; du -sm /work")
    finally:
        stop.set()
        watcher.join()
    assert r.killed == "work_quota" and "No space left on device" in r.stderr
    assert peak[0] <= QUOTA_MB << 20 and usage_bytes(box.work) <= QUOTA_MB << 20
    fs = os.statvfs(box.work)
    assert fs.f_blocks * fs.f_frsize == QUOTA_MB << 20  # the bound is the filesystem's size
    # Nor by many small files (inodes are bounded too), nor by writing elsewhere.
    box.sh("rm -f f*")
    r = box.py("import os\nn = 0\ntry:\n    while True:\n        open(f'n{n}', 'w').close(); n += 1\nexcept OSError as e:\n    print(n, e.strerror)")
    count, why = r.stdout.split(" ", 1)
    assert r.ok and 0 < int(count) <= 16384 and why.strip() == "No space left on device"


@as_root
def test_the_work_dir_holds_no_working_setuid_file_or_device_and_stays_private(box, tmp_path):
    r = box.sh("cp /usr/bin/id ./id && chmod 4755 ./id && chmod 0777 /work && ls -ln ./id; mknod ./null c 1 3; echo mknod=$?")
    assert "mknod=1" in r.stdout and not (box.work / "null").exists()
    sandbox_uid = box.rt.boxes["box"]["uid"]
    setuid_file = box.work / "id"
    assert setuid_file.stat().st_mode & 0o4000 and setuid_file.stat().st_uid == sandbox_uid  # it was planted
    # On the host the work dir is nosuid/nodev: running the setuid file does not become its owner.
    assert {"nosuid", "nodev"} <= _mount_options(Path("/proc/self/mountinfo").read_text(), str(box.work))
    assert subprocess.run([str(setuid_file), "-u"], capture_output=True, text=True).stdout.strip() == str(os.geteuid())
    # And no other host user reaches the now world-writable dir: its parent is root's, 0700.
    other = subprocess.run(["setpriv", "--reuid=62000", "--regid=62000", "--clear-groups", "ls", str(box.work)], capture_output=True, text=True)
    assert other.returncode != 0 and "Permission denied" in other.stderr
    assert oct(box.work.parent.stat().st_mode & 0o777) == "0o700"


def test_the_root_and_dev_are_read_only_not_unbounded_ram(box):
    r = box.sh("for p in /x /etc/x /dev/x /dev/shm/x /usr/x; do touch $p && echo WROTE $p; done; mkdir /newdir && echo WROTE /newdir; "
               "cat /proc/self/mountinfo")
    assert "WROTE" not in r.stdout
    assert r.stderr.count("Read-only file system") >= 5, r.stderr
    mountinfo = r.stdout
    assert "ro" in _mount_options(mountinfo, "/") and "ro" in _mount_options(mountinfo, "/dev")
    # /tmp is a tmpfs of tmp_size_mb (64 MiB): 15 MB files (under max_file_mb) stop there.
    r = box.py("n = 0\ntry:\n    while n < 20:\n        open(f'/tmp/f{n}', 'wb').write(bytes(15_000_000)); n += 1\n"
               "except OSError as e:\n    print(n, e.strerror)")
    assert r.ok and r.stdout.split(" ", 1) == ["4", "No space left on device\n"]


SYSCALLS = """
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(*args):
    rc = libc.syscall(*[ctypes.c_long(a) for a in args])
    return [rc, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()) if rc == -1 else None]
NEWUSER, NEWNS, NEWNET, SIGCHLD = 0x10000000, 0x20000, 0x40000000, 17
out = {
    "unshare_user": [libc.unshare(NEWUSER), errno.errorcode[ctypes.get_errno()]],
    "unshare_mount": [libc.unshare(NEWNS), errno.errorcode[ctypes.get_errno()]],
    "clone_user": call(56, NEWUSER | SIGCHLD, 0, 0, 0, 0),
    "clone_net": call(56, NEWNET | SIGCHLD, 0, 0, 0, 0),
    "clone3": call(435, 0, 0),
    "setns": call(308, os.open("/proc/self/ns/user", os.O_RDONLY), 0),
    "mount": [libc.mount(b"none", b"/tmp", b"tmpfs", 0, None), errno.errorcode[ctypes.get_errno()]],
    "keyctl": call(250, 0, 0, 0, 0, 0),
    "bpf": call(321, 0, 0, 0),
    "ptrace": call(101, 16, 1, 0, 0),
    "perf_event_open": call(298, 0, 0, -1, -1, 0),
    "io_uring_setup": call(425, 1, 0),
    "userfaultfd": call(323, 0),
    "x32_getpid": call(0x40000000 | 39),
    "seccomp_mode": [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")],
}
import subprocess, threading  # what programs need still works: fork+exec, threads
t = threading.Thread(target=lambda: None); t.start(); t.join()
out["fork_exec"] = subprocess.run(["true"]).returncode
print(json.dumps(out))
"""


def test_user_namespaces_mounts_and_kernel_attack_surface_are_refused(box):
    import json

    r = box.py(SYSCALLS)
    assert r.ok, r.stderr
    got = json.loads(r.stdout)
    for name in ("unshare_user", "unshare_mount", "clone_user", "clone_net", "setns", "mount", "keyctl", "bpf", "ptrace",
                 "perf_event_open", "io_uring_setup", "userfaultfd", "x32_getpid"):
        assert got[name] == [-1, "EPERM"], (name, got[name])
    assert got["clone3"] == [-1, "ENOSYS"]  # so libc falls back to clone, whose flags the filter reads
    assert got["seccomp_mode"] == ["2"] and got["fork_exec"] == 0
    r = box.sh("unshare --user --map-root-user id -u; echo rc=$?")
    assert "rc=0" not in r.stdout and "Operation not permitted" in r.stderr
    assert {"unshare", "setns", "mount", "bpf", "keyctl", "ptrace"} <= set(DENIED_SYSCALLS)
