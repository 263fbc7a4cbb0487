"""Prometheus metrics of a real run, scraped from Ray's metrics agent while the run goes on.

The run (dialogue on simllm with injected 429s, 500s and timeouts) starts its own local Ray in
a subprocess, with Ray's metrics report interval at one second (``RAY_metrics_report_interval_ms``,
Ray's own knob). The test finds the exporters through the service-discovery file the run
writes, scrapes them until every metric has a non-zero value for the run's roles and LLM
resource, and kills one agent host on the way so the driver re-sends its tasks.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import psutil
import pytest

from matrix_core._private.metrics import METRIC_NAMES, SERVICE_DISCOVERY_FILE

pytestmark = pytest.mark.slow

LINE = re.compile(r'^ray_(matrix_\w+?)(?:_bucket|_count|_sum)?\{(.*)\} ([0-9.eE+-]+|NaN)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
ROLES = ("questioner", "answerer")


def scrape(targets) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for target in targets:
        try:
            text = urllib.request.urlopen(f"http://{target}/metrics", timeout=5).read().decode()
        except OSError:
            continue  # a node's agent restarting: the next scrape gets it
        for line in text.splitlines():
            m = LINE.match(line)
            suffix = line.split("{")[0].rsplit("_", 1)[-1]
            if m and suffix not in ("bucket", "sum"):  # a histogram counts through its _count
                samples.append((m.group(1), dict(LABEL.findall(m.group(2))), float(m.group(3))))
    return samples


def expected_series() -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """(metric, labels that must match) for every metric the issue names."""
    want = []
    for name in METRIC_NAMES:
        if name.startswith("matrix_role_"):
            want += [(name, (("role", role),)) for role in ROLES]
        elif name == "matrix_llm_errors_total":
            want += [(name, (("resource", "default"), ("kind", kind))) for kind in ("429", "5xx", "timeout")]
        elif name.startswith("matrix_llm_"):
            want.append((name, (("resource", "default"),)))
        else:
            want.append((name, ()))
    return want


def test_every_metric_is_exported_with_non_zero_values_during_a_simllm_run(tmp_path):
    out = tmp_path / "d.jsonl"
    ray_tmp = Path(tempfile.mkdtemp(prefix="mxm", dir="/tmp"))  # AF_UNIX socket paths must stay short
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_metrics_report_interval_ms"] = "1000"
    env["MATRIX_LOAD_PLUGINS"] = "dialogue,simllm,jsonl"  # only what the run needs
    cmd = [
        sys.executable, "-c", "from matrix_core.cli import main; main()", "run", "dialogue", "llm=simllm",
        f"output.path={out}", f"run.ray_temp_dir={ray_tmp}", "run.hosts=1", "run.num_cpus=2", "run.progress=lines",
        # Slow replies and two slots per role: queues build up and the run lasts long enough to watch.
        "llm.decode_tps_single=40", "agents.questioner.max_in_flight=2", "agents.answerer.max_in_flight=2",
        "llm.faults.rate_429=0.1", "llm.faults.rate_500=0.1", "llm.faults.rate_timeout=0.05", "llm.faults.retry_after_s=0.1",
        "llm.client.timeout_s=6", "llm.client.max_retries=1", "llm.client.backoff_base_s=0.05",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    best: dict[tuple, float] = defaultdict(float)
    want = expected_series()
    run_id = None
    killed = False
    missing = want
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            sd = ray_tmp / SERVICE_DISCOVERY_FILE
            if sd.exists():
                targets = [t for group in json.loads(sd.read_text()) for t in group["targets"]]
                for name, labels, value in scrape(targets):
                    if labels.get("workflow") != "dialogue":
                        continue
                    assert "task_id" not in labels
                    run_id = run_id or labels.get("run_id")
                    if labels.get("run_id") == run_id:
                        key = (name, tuple(sorted((k, v) for k, v in labels.items() if k in ("role", "resource", "kind"))))
                        best[key] = max(best[key], value)
            missing = [(n, ls) for n, ls in want if not any(k[0] == n and set(ls) <= set(k[1]) and v > 0 for k, v in best.items())]
            if not missing:
                break
            if not killed and out.exists() and len(out.read_text().splitlines()) >= 2:
                killed = kill_one_agent_host(proc.pid)
            if proc.poll() is not None:
                break
            time.sleep(1.0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        log = proc.communicate(timeout=120)[0]
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert killed, "no agent host process found to kill\n" + log[-3000:]
    assert not missing, f"never non-zero for run {run_id}: {missing}\nseen: {sorted(k for k, v in best.items() if v > 0)}\n{log[-3000:]}"


def kill_one_agent_host(root_pid: int) -> bool:
    """SIGKILL the agent host's worker process (Ray restarts it; the driver re-sends its tasks)."""
    for p in psutil.Process(root_pid).children(recursive=True):
        try:
            if "AgentHost" in " ".join(p.cmdline()) or "matrix-host" in " ".join(p.cmdline()):
                p.kill()
                return True
        except psutil.Error:
            continue
    return False
