"""Suite ``upstream``: the upstream system (fair-matrix 0.2.6, the paper's code) side by side with
ours, on the same Coral questions, runs alternating in random order.

Upstream runs its own peer-to-peer Coral workflow with its dummy agents (config
``coral_mmlu_pro_dummy``: no LLM, 1024+-20 % character replies, a matcher that agrees with
probability 0.1 before the 3rd rated turn and 0.9 from it on, 20 turns at most) in a venv of its
own that this suite creates (``benchmarks/.upstream/venv``: ``fair-matrix[agent]==0.2.6``,
``ray==2.55.1``, ``s3fs==2026.9.0`` from PyPI), on its own Ray cluster started by its runner
(``_upstream_runner.py``) and stopped with it (its process group). Ours runs ``matrix run coral``
with ``llm=bench_coral``: an in-process fake LLM that answers the same way (``_coralfake.py``),
parser extractor, ``max_turns=20``. The questions are the multiple-choice ones of our Coral's
shipped set, repeated with distinct ids, written as one local JSON file both read.

A hop is one agent step. Upstream takes 3 per reply (speaker, extractor, matcher), ours 2
(speaker, extractor: the agreement test is part of the extractor's step), so replies/s (the
dialogue turns produced) is the unit that compares the two; hops/s is each one's own count.
"""
from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import fmt, spread
from ._window import Window

HERE = Path(__file__).parent
UPSTREAM = HERE / ".upstream"
VENV = UPSTREAM / "venv"
PYTHON = VENV / "bin" / "python"
REQUIREMENTS = ["fair-matrix[agent]==0.2.6", "ray==2.55.1", "s3fs==2026.9.0"]
RUNNER = HERE / "_upstream_runner.py"
MAX_TURNS = 20  # upstream's coral_sequential max_turns


def ensure_venv() -> dict[str, str]:
    """Creates the upstream venv on first use; returns the versions installed there."""
    probe = "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in ('fair-matrix', 'ray', 's3fs', 'hydra-core')}))"
    if PYTHON.exists():
        done = subprocess.run([str(PYTHON), "-c", probe], capture_output=True, text=True)
        if done.returncode == 0:
            versions = json.loads(done.stdout)
            if versions["fair-matrix"] == "0.2.6" and versions["ray"] == "2.55.1":
                return versions
    UPSTREAM.mkdir(exist_ok=True)
    print(f"upstream: creating {VENV} and installing {' '.join(REQUIREMENTS)} (a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    return json.loads(subprocess.run([str(PYTHON), "-c", probe], capture_output=True, text=True, check=True).stdout)


def write_questions(n: int, path: Path) -> Path:
    """``n`` multiple-choice questions from our Coral's shipped set, ids 0..n-1, MMLU-Pro fields."""
    from importlib.resources import files

    shipped = [json.loads(line) for line in files("matrix_plugin_coral").joinpath("data/questions.jsonl").read_text().splitlines() if line.strip()]
    choice = [q for q in shipped if q.get("options")]
    with open(path, "w") as f:
        for i in range(n):
            q = choice[i % len(choice)]
            f.write(json.dumps({"question_id": i, "question": q["question"], "options": q["options"], "answer": q["answer"],
                                "answer_index": q.get("answer_index"), "category": q.get("category", "")}) + "\n")
    return path


def _stop_group(proc: subprocess.Popen) -> None:
    """Stops what the runner left (its Ray) by process group, never by name."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_upstream(questions: Path, tasks: int, concurrency: int, timeout_s: float = 3600) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "upstream.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYTHONPATH"))}
        proc = subprocess.Popen([str(PYTHON), str(RUNNER), str(questions), str(out), str(tasks), str(concurrency)], cwd=tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        try:
            with Window(out, root=proc.pid) as window:
                log, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            raise RuntimeError(f"upstream run of {tasks} tasks did not finish in {timeout_s:.0f}s")
        finally:
            _stop_group(proc)
        if proc.returncode != 0 or "UPSTREAM_RESULT" not in log:
            raise RuntimeError(f"upstream run failed (exit {proc.returncode}):\n{log[-3000:]}")
        records = [json.loads(line) for line in open(out)]
    replies = hops = 0
    for r in records:
        history = r["history"][1:]  # the first entry is the injected question, not a step
        hops += len(history)
        replies += sum(1 for h in history if h["agent"] in ("teacher", "student"))
    assert len(records) == tasks, f"upstream wrote {len(records)} of {tasks} records"
    starts, ends = min(r["init_timestamp"] for r in records), max(r["finish_timestamp"] for r in records)
    return _row(window.result(tasks), tasks, hops, replies, ends - starts, failed=sum(1 for r in records if r["status"].get("error")))


def run_ours(questions: Path, tasks: int, concurrency: int) -> dict[str, Any]:
    import matrix_core

    from .workload import register

    register()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ours.jsonl"
        with Window(out) as window:
            t0 = time.time()
            summary = matrix_core.run("coral", [
                "llm=bench_coral", f"output.path={out}", "run.progress=off", f"dataset.path={questions}", "dataset.limit=null",
                f"max_turns={MAX_TURNS}", f"run.max_concurrent_tasks={concurrency}",
                *(f"agents.{r}.max_in_flight={concurrency}" for r in ("alice", "bob", "extractor")),
            ])
            wall = time.time() - t0
        records = [json.loads(line) for line in open(out)]
    replies = sum(len(r["state"]["turns"]) for r in records)
    assert len(records) == tasks, f"ours wrote {len(records)} of {tasks} records"
    return _row(window.result(tasks), tasks, summary.hops, replies, summary.wall_s or wall, failed=summary.failed)


def _row(w: dict[str, Any], tasks: int, hops: int, replies: int, wall_s: float, failed: int) -> dict[str, Any]:
    per_task_hops, per_task_replies = hops / tasks, replies / tasks
    rate = w["steady_tasks_per_s"]
    return {"tasks_per_s": rate, "hops_per_s": rate * per_task_hops, "replies_per_s": rate * per_task_replies,
            "replies_per_task": per_task_replies, "hops_per_task": per_task_hops, "whole_run_tasks_per_s": tasks / wall_s,
            "cpu_cores": w["cpu_cores_in_window"], "cpu_ms_per_reply": 1000 * w["cpu_cores_in_window"] / max(rate * per_task_replies, 1e-9),
            "peak_pss_mb": w["peak_pss_mb"], "load_avg": w["load_avg_in_window"], "window_s": w["window_s"], "failed": failed}


SYSTEMS = {"upstream": run_upstream, "ours": run_ours}
METRICS = ("tasks_per_s", "hops_per_s", "replies_per_s", "replies_per_task", "hops_per_task", "whole_run_tasks_per_s",
           "cpu_cores", "cpu_ms_per_reply", "peak_pss_mb", "load_avg")


def suite_upstream(quick: bool, repeats: int, tasks: int | None = None, concurrencies: tuple[int, ...] | None = None) -> dict[str, Any]:
    versions = ensure_venv()
    tasks = tasks or (60 if quick else 2000)
    concurrencies = concurrencies or ((20,) if quick else (100, 1000))
    rows, order = [], []
    with tempfile.TemporaryDirectory() as tmp:
        questions = write_questions(tasks, Path(tmp) / "questions.jsonl")
        for concurrency in concurrencies:
            c = min(concurrency, tasks)
            schedule = [s for _ in range(repeats) for s in SYSTEMS]
            random.Random(concurrency).shuffle(schedule)
            # Alternate: never two runs of one system in a row, whatever the shuffle gave.
            schedule = [s for pair in zip(*[[x for x in schedule if x == name] for name in SYSTEMS]) for s in pair]
            runs: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
            for system in schedule:
                r = SYSTEMS[system](questions, tasks, c)
                runs[system].append(r)
                order.append(system)
                print(f"upstream suite c={c} {system:<8} tasks/s {r['tasks_per_s']:.1f} replies/s {r['replies_per_s']:.1f} "
                      f"hops/s {r['hops_per_s']:.1f} cpu {r['cpu_cores']:.2f} cores load {r['load_avg']:.1f}", flush=True)
            base = statistics.median(r["replies_per_s"] for r in runs["upstream"])
            for system in SYSTEMS:
                row = {"concurrency": c, "tasks": tasks, "system": system, **{m: spread(r[m] for r in runs[system]) for m in METRICS}}
                row["replies_vs_upstream"] = row["replies_per_s"]["median"] / base
                rows.append(row)
    return {"rows": rows, "repeats": repeats, "order": order, "upstream_versions": versions}


COLUMNS = [
    ("concurrency", "tasks in flight", lambda r: str(r["concurrency"])),
    ("tasks", "tasks", lambda r: str(r["tasks"])),
    ("system", "system", lambda r: {"upstream": "upstream fair-matrix 0.2.6 (Ray 2.55.1)", "ours": "ours (Matrix SDK)"}[r["system"]]),
    ("tasks_per_s", "tasks/s", lambda r: fmt(r["tasks_per_s"], 1)),
    ("replies_per_s", "replies/s", lambda r: fmt(r["replies_per_s"], 1)),
    ("hops_per_s", "agent hops/s", lambda r: fmt(r["hops_per_s"], 1)),
    ("per_task", "replies / hops per task", lambda r: f"{r['replies_per_task']['median']:.2f} / {r['hops_per_task']['median']:.2f}"),
    ("cpu", "CPU cores used", lambda r: fmt(r["cpu_cores"], 2)),
    ("cpu_reply", "CPU ms per reply", lambda r: fmt(r["cpu_ms_per_reply"], 1)),
    ("mem", "peak PSS MB", lambda r: fmt(r["peak_pss_mb"])),
    ("load", "load avg", lambda r: fmt(r["load_avg"], 1)),
    ("vs", "replies/s ÷ upstream", lambda r: f"{r['replies_vs_upstream']:.2f}"),
]
