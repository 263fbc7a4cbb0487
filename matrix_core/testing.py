"""Test kit for plugin authors: a fake OpenAI-compatible LLM and helpers.

The fake answers at the HTTP layer (``fake://`` endpoints), so the real client code runs:
the reply echoes the last user message, token counts are word counts.
"""
from __future__ import annotations

import json
from typing import Any

from ._private.fake_llm import FAKE_ENDPOINT, fake_llm_transport  # noqa: F401 (the test kit's API)


def read_records(path) -> list[dict[str, Any]]:
    """Records of a JSONL output file."""
    from pathlib import Path

    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def assert_exactly_once(records, expected_ids) -> None:
    """Every expected task id is in ``records`` exactly once, and nothing else is."""
    from collections import Counter

    counts = Counter(r["task_id"] for r in records)
    duplicates = {k: v for k, v in counts.items() if v > 1}
    assert not duplicates, f"written more than once: {duplicates}"
    expected = set(expected_ids)
    assert set(counts) == expected, f"missing {sorted(expected - set(counts))[:10]}, unexpected {sorted(set(counts) - expected)[:10]}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayRayHead:
    """A ``ray start --head`` on loopback that the test owns: ``with ThrowawayRayHead() as (env, address)``.

    It is ended through its own process group, never ``ray stop`` (which would stop every
    Ray on the machine). Ray 2.60 turns token auth on for ``ray start``; this throwaway
    cluster opts out, and ``env`` carries that setting for the clients the test starts.
    """

    def __init__(self, num_cpus: int = 1):
        import os

        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        self.address = f"127.0.0.1:{free_port()}"
        self.num_cpus = num_cpus

    def __enter__(self) -> tuple[dict[str, str], str]:
        import subprocess
        import sys
        import tempfile

        self.temp = tempfile.mkdtemp(prefix="mxr", dir="/tmp")  # AF_UNIX socket paths must stay short
        # --block keeps the cluster's processes in one process group that we own.
        self.head = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={self.address.split(':')[1]}",
             f"--num-cpus={self.num_cpus}", "--include-dashboard=false", f"--temp-dir={self.temp}", "--disable-usage-stats"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env, start_new_session=True,
        )
        return self.env, self.address

    def __exit__(self, *exc) -> None:
        import os
        import shutil
        import signal
        import subprocess

        import psutil

        os.killpg(self.head.pid, signal.SIGTERM)
        try:
            self.head.wait(15)
        except subprocess.TimeoutExpired:  # its orderly shutdown can take half a minute
            os.killpg(self.head.pid, signal.SIGKILL)
            self.head.wait(15)
        for p in psutil.process_iter(["cmdline"]):
            if self.temp in " ".join(p.info["cmdline"] or []):
                p.kill()
        shutil.rmtree(self.temp, ignore_errors=True)
