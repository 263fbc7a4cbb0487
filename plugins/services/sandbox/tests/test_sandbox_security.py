"""Escape attempts against the bubblewrap runtime, in-process (no Ray). Each must be contained,
reported in the result, and leave the host as it was."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from matrix_core import MatrixError
from matrix_plugin_sandbox import BubblewrapRuntime

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (apt-get install -y bubblewrap)")

REPO_FILE = Path(__file__).resolve()


class Box:
    """One runtime and one sandbox on a private event loop."""

    def __init__(self, tmp_path, **cfg):
        self.loop = asyncio.new_event_loop()
        self.rt = BubblewrapRuntime({"temp_root": str(tmp_path), "max_sandboxes": 4, "timeout_s": 10, **cfg})
        self.run(self.rt.start())
        self.id = "box"
        self.run(self.rt.create(self.id))

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def exec(self, command, **kw):
        return self.run(self.rt.exec(self.id, command, **kw))

    def py(self, code, **kw):
        self.run(self.rt.write_file(self.id, "t.py", code.encode()))
        return self.exec(["python3", "t.py"], **kw)

    @property
    def work(self) -> Path:
        return self.rt.boxes[self.id]["work"]

    def close(self):
        self.run(self.rt.close())
        self.loop.close()


@pytest.fixture
def box(tmp_path):
    b = Box(tmp_path)
    yield b
    b.close()


def uid_processes(uid):
    return [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]


def test_stdin_env_cwd_and_state_between_calls(box):
    r = box.exec("mkdir -p sub && cd sub && echo kept > state.txt && pwd")
    assert r.ok and r.stdout.strip() == "/work/sub"
    r = box.exec(["sh", "-c", 'cat state.txt; echo "$GREETING"; cat'], stdin="from stdin", env={"GREETING": "hello"}, cwd="sub")
    assert r.ok and r.stdout.split("\n") == ["kept", "hello", "from stdin"]
    assert box.run(box.rt.read_file(box.id, "sub/state.txt")) == b"kept\n"
    r = box.py("import sys; print(sys.version_info[:2] == (%d, %d)); sys.exit(3)" % sys.version_info[:2])
    assert r.exit_code == 3 and r.stdout.strip() == "True" and not r.ok


def test_host_files_are_absent(box):
    home = os.path.expanduser("~")
    secret = Path(home) / ".matrix-sandbox-test-secret"
    secret.write_text("top secret")
    try:
        r = box.py(f"""
import os
for path in {[str(REPO_FILE), str(REPO_FILE.parents[4] / 'README.md'), '/etc/shadow', '/etc/passwd', str(secret)]!r}:
    try:
        open(path).read(); print('LEAKED', path)
    except OSError as e:
        print('denied', path, type(e).__name__)
try:
    print('home', sorted(os.listdir({home!r})))
except OSError as e:
    print('home unlistable', type(e).__name__)
print('etc', sorted(os.listdir('/etc')))
""")
    finally:
        secret.unlink()
    assert r.ok, r.stderr
    assert "LEAKED" not in r.stdout and r.stdout.count("denied") == 5
    assert "top secret" not in r.stdout and "home [" not in r.stdout
    etc = r.stdout.split("\netc ", 1)[1]
    assert "shadow" not in etc and "passwd" not in etc and "hostname" not in etc


def test_other_sandboxes_and_the_temp_root_are_invisible(box):
    box.run(box.rt.create("other"))
    box.run(box.rt.write_file("other", "mine.txt", b"other's data"))
    r = box.py(f"""
import os
print(os.path.exists({str(box.rt.root.mine)!r}), os.path.exists({str(box.rt.boxes['other']['work'])!r}))
print(sorted(os.listdir('/work')))
""")
    assert r.ok and r.stdout.split("\n")[0] == "False False" and "mine.txt" not in r.stdout


def test_no_network(box):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:  # closed at the end of the test: nobody came
            pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        r = box.py(f"""
import socket
for host, port in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
    try:
        socket.create_connection((host, port), timeout=2); print("CONNECTED", host)
    except OSError as e:
        print("refused", host, e.errno)
try:
    socket.getaddrinfo("pypi.org", 443); print("RESOLVED")
except OSError as e:
    print("no dns", type(e).__name__)
""", timeout_s=20)
    finally:
        server.close()
    assert r.ok, r.stderr
    assert "CONNECTED" not in r.stdout and "RESOLVED" not in r.stdout and r.stdout.count("refused") == 3
    assert not accepted


def test_writes_outside_the_work_dir_fail_or_stay_private(box, tmp_path):
    marker = f"matrix-escape-{os.getpid()}"
    r = box.py(f"""
import os
for path in ["/usr/{marker}", "/etc/{marker}", "/{marker}", "/bin/{marker}", {str(tmp_path / marker)!r}]:
    try:
        open(path, "w").write("x"); print("WROTE", path)
    except OSError as e:
        print("denied", path, type(e).__name__)
open("/tmp/{marker}", "w").write("private")
print("tmp ok")
""")
    assert r.ok, r.stderr
    assert "WROTE" not in r.stdout and r.stdout.count("denied") == 5
    assert not Path("/tmp", marker).exists() and not (tmp_path / marker).exists() and not Path("/usr", marker).exists()


def test_symlinks_do_not_lead_the_host_out(box):
    assert box.exec("ln -s /etc/hostname leak && ln -s / root && mkdir d && ln -s /etc d/etc").ok
    for path in ("leak", "root/etc/hostname", "d/etc/hostname", "../../owner.json", "/work/../x"):
        with pytest.raises(MatrixError):
            box.run(box.rt.read_file(box.id, path))
    with pytest.raises(MatrixError):
        box.run(box.rt.write_file(box.id, "root/tmp/planted", b"x"))
    assert not Path("/tmp/planted").exists()
    box.run(box.rt.write_file(box.id, "/work/d/ok.txt", b"fine"))
    assert box.exec("cat d/ok.txt").stdout == "fine"


def test_fork_bomb_is_contained(box):
    uid = box.rt.boxes[box.id]["uid"]
    started = time.monotonic()
    r = box.exec("bomb() { bomb | bomb & }; bomb; sleep 3; echo survived", timeout_s=6)
    elapsed = time.monotonic() - started
    host_probe = time.monotonic()
    assert os.system("true") == 0 and time.monotonic() - host_probe < 2  # the host still forks
    assert elapsed < 15
    assert "Resource temporarily unavailable" in r.stderr or "fork" in r.stderr.lower() or r.killed
    if uid is not None:
        time.sleep(0.2)
        assert uid_processes(uid) == []
    r = box.py("""
import os
n = 0
try:
    while True:
        if os.fork() == 0:
            import time; time.sleep(30); os._exit(0)
        n += 1
except OSError as e:
    print("stopped after", n, e.errno)
""")
    assert r.ok and r.stdout.startswith("stopped after")
    assert int(r.stdout.split()[2]) < 32  # runtime.max_processes
    if uid is not None:
        assert uid_processes(uid) == []  # the 30 s sleepers went with the pid namespace


def test_memory_bomb_is_refused(box):
    before = psutil.virtual_memory().available
    r = box.py("""
blocks = []
try:
    while True:
        blocks.append(bytearray(64 << 20))
except MemoryError:
    print("MemoryError after", len(blocks) * 64, "MiB")
""")
    assert r.ok and r.stdout.startswith("MemoryError after")
    assert int(r.stdout.split()[2]) <= 512  # runtime.memory_mb
    assert psutil.virtual_memory().available > before - (1 << 30)


def test_infinite_loop_is_killed_at_the_timeout(box):
    started = time.monotonic()
    r = box.py("while True:\n    pass", timeout_s=1.5)
    assert r.killed == "timeout" and r.timed_out and r.exit_code is None
    assert 1.4 < time.monotonic() - started < 5


def test_output_flood_is_cut(box):
    r = box.exec("yes matrix", timeout_s=20)
    assert r.killed == "output_limit" and r.output_truncated
    assert len(r.stdout) == 65536 and r.duration_s < 10
    r = box.py("import sys\nsys.stderr.write('e' * 10_000_000)")
    assert r.killed == "output_limit" and len(r.stderr) == 65536


def test_disk_filling_is_capped(box):
    r = box.exec("head -c 100000000 /dev/zero > big; echo $?")
    assert box.work.joinpath("big").stat().st_size <= 16 << 20 if box.work.joinpath("big").exists() else True
    r = box.exec("for i in 1 2 3 4 5 6; do head -c 15000000 /dev/zero > f$i; done")
    assert r.killed == "work_quota"
    if box.rt.boxes[box.id]["mounted"]:  # a filesystem of work_quota_mb: the writes stopped there, the files stay
        assert "No space left on device" in r.stderr and r.info["work_bytes"] <= 64 << 20
    else:  # checked after the command: emptied
        assert list(box.work.iterdir()) == []


def test_no_process_survives_a_command_or_a_release(tmp_path):
    b = Box(tmp_path)
    uid = b.rt.boxes[b.id]["uid"]
    try:
        r = b.exec("(setsid sleep 1000 &) ; nohup sleep 1000 > /dev/null 2>&1 & echo started")
        assert r.ok and r.stdout.strip() == "started" and r.duration_s < 5
        time.sleep(0.2)
        assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "1000"]]
        slow = asyncio.ensure_future(b.rt.exec(b.id, "sleep 1000"), loop=b.loop)
        b.run(asyncio.sleep(0.5))
        assert b.rt.census()["processes"] == 1
        b.run(b.rt.destroy(b.id))
        assert b.run(slow).exit_code != 0
        assert b.rt.census() == {"processes": 0, "work_dirs": 0}
        if uid is not None:
            assert uid_processes(uid) == []
    finally:
        b.close()


def test_missing_bubblewrap_is_one_clear_error(tmp_path):
    rt = BubblewrapRuntime({"temp_root": str(tmp_path), "bwrap": "bwrap-not-installed"})
    with pytest.raises(MatrixError, match="apt-get install -y bubblewrap"):
        asyncio.run(rt.start())
