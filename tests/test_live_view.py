"""The live view on a terminal: `matrix run` in a pseudo-terminal shows one line per role and
a non-zero tokens/s while no task has finished yet (tokens count as each turn ends)."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time

import pytest

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HEADLINE = re.compile(r"tasks (\d+)(?:/(\d+))? \| done (\d+) \| failed (\d+) \| in flight (\d+) \| [\d.]+ tasks/s \| (\d+) tokens/s")
ROLE = r"^\s*{}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s*$"


def frames(text: str):
    """(headline match, the lines after it) for every frame the live view drew."""
    lines = ANSI.sub("", text).replace("\r", "\n").split("\n")
    for i, line in enumerate(lines):
        m = HEADLINE.search(line)
        if m:
            yield m, lines[i + 1 : i + 8]


def test_tty_shows_roles_and_tokens_before_the_first_task_finishes(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="mxl", dir="/tmp")  # its own Ray; AF_UNIX socket paths must stay short
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(TERM="xterm-256color", MATRIX_LOAD_PLUGINS="dialogue,simllm,jsonl")
    cmd = [
        sys.executable, "-c", "from matrix_core.cli import main; main()", "run", "dialogue", "llm=simllm",
        f"output.path={tmp_path / 'd.jsonl'}", "dataset.limit=4", "run.num_cpus=2", f"run.ray_temp_dir={ray_tmp}",
        # ~15 tokens/s per sequence: a turn takes seconds, a task (four turns) tens of seconds.
        "llm.decode_tps_single=15", "llm.output_tokens.dist=fixed", "llm.output_tokens.mean=40",
    ]
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = b""
    seen = None
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            if seen is None:
                for m, after in frames(out.decode(errors="replace")):
                    done, failed, tokens = int(m.group(3)), int(m.group(4)), int(m.group(6))
                    roles = {r: next((re.match(ROLE.format(r), line) for line in after if re.match(ROLE.format(r), line)), None) for r in ("questioner", "answerer")}
                    if done == 0 and failed == 0 and tokens > 0 and all(roles.values()):
                        seen = (m.group(0), roles)
                        break
        proc.wait(300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        os.close(master)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    text = ANSI.sub("", out.decode(errors="replace"))
    assert seen is not None, f"no frame with role lines and tokens/s > 0 before the first task finished:\n{text[-4000:]}"
    headline, roles = seen
    assert HEADLINE.search(headline).group(2) == "4", "the dataset size (dataset.limit) gives the total for the ETA"
    assert int(roles["questioner"].group(4)) > 0, "the questioner finished turns before any task was done"
    assert proc.returncode == 0, text[-3000:]
    last = list(frames(out.decode(errors="replace")))[-1][0]
    assert last.group(3) == "4" and "matrix run dialogue: 4 done" in text
