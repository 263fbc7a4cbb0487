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

Suite ``upstream_sim``: both against one simllm server (a Ray actor of ours, its CPU left out of
ours) with the same capacity. Upstream runs its LLM Coral (``coral_mmlu_pro``: teacher and
student replies of ``max_tokens`` 1024, an LLM extractor call of 32 per reply, a code matcher),
its service registry answered with the server's URL (``register_server`` in the runner); ours
runs ``matrix run coral`` with ``llm=endpoint`` on that URL, the same ``max_tokens`` and its
extractor in ``llm`` mode (also one LLM call of 32 tokens per reply). The server fills
``max_tokens`` exactly with filler text in which neither extractor finds an answer, so neither
side ever agrees: both run every dialogue to ``SIM_TURNS`` replies, 2 LLM calls per reply.
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

from ._common import SimLLM, fmt, spread
from ._window import Window

HERE = Path(__file__).parent
UPSTREAM = HERE / ".upstream"
VENV = UPSTREAM / "venv"
PYTHON = VENV / "bin" / "python"
REQUIREMENTS = ["fair-matrix[agent]==0.2.6", "ray==2.55.1", "s3fs==2026.9.0"]
RUNNER = HERE / "_upstream_runner.py"
MAX_TURNS = 20  # upstream's coral_sequential max_turns
# Against simllm no dialogue agrees, so every one runs to its last turn: 2 (teacher, student),
# not 20, so that 2,000 LLM-bound tasks x 5 repeats x 2 systems fit in about an hour.
SIM_TURNS, SIM_REPLY_TOKENS, SIM_EXTRACT_TOKENS = 2, 1024, 32  # max_tokens: upstream's coral_resources
SIM_SLOTS = 16


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


def run_upstream(questions: Path, tasks: int, concurrency: int, timeout_s: float = 3600, llm_url: str | None = None,
                 turns: int = MAX_TURNS, exclude: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Upstream's Coral: its dummy agents, or with ``llm_url`` its LLM agents on that server."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "upstream.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYTHONPATH"))}
        llm = [llm_url, str(turns)] if llm_url else []
        proc = subprocess.Popen([str(PYTHON), str(RUNNER), str(questions), str(out), str(tasks), str(concurrency), *llm], cwd=tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        try:
            with Window(out, root=proc.pid, exclude=exclude) as window:
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
    # An LLM call that failed after upstream's retries ends its task with an error response.
    failed = sum(1 for r in records if r["status"].get("error") or any("error" in h["response"] for h in r["history"]))
    return _row(window.result(tasks), tasks, hops, replies, ends - starts, failed=failed)


def run_ours(questions: Path, tasks: int, concurrency: int, llm_url: str | None = None, turns: int = MAX_TURNS,
             exclude: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Our Coral: on the in-process fake LLM, or with ``llm_url`` on that server as upstream's LLM Coral calls it."""
    import matrix_core

    from .workload import register

    register()
    llm = ["llm=bench_coral"] if llm_url is None else [
        "llm=endpoint", f"llm.base_url={llm_url}", "llm.model=simllm", "llm.client.tool_calling=native", "llm.client.timeout_s=600",
        f"llm.client.max_concurrency_per_endpoint={concurrency}", "extractor.mode=llm", f"agents.extractor.max_tokens={SIM_EXTRACT_TOKENS}",
        *(f"agents.{r}.{k}={v}" for r in ("alice", "bob") for k, v in (("max_tokens", SIM_REPLY_TOKENS), ("temperature", 0.2), ("top_p", 0.9))),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ours.jsonl"
        with Window(out, exclude=exclude) as window:
            t0 = time.time()
            summary = matrix_core.run("coral", [
                *llm, f"output.path={out}", "run.progress=off", f"dataset.path={questions}", "dataset.limit=null",
                f"max_turns={turns}", f"run.max_concurrent_tasks={concurrency}",
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
SIM_METRICS = ("llm_calls_per_task", "llm_tokens_per_task", "llm_capacity_used")


def _alternating(systems, repeats: int, seed: int) -> list[str]:
    """``repeats`` rounds of every system, never two runs of one system in a row.

    With two systems that leaves one free choice, which one goes first: drawn at random.
    """
    order = list(systems)
    random.Random(seed).shuffle(order)
    return order * repeats


def _compare(systems: dict[str, Any], tasks: int, concurrencies: tuple[int, ...], repeats: int, metrics: tuple[str, ...]) -> dict[str, Any]:
    """Runs ``systems[name](questions, tasks, concurrency)`` alternating; rows with min/median/max."""
    rows, order = [], []
    with tempfile.TemporaryDirectory() as tmp:
        questions = write_questions(tasks, Path(tmp) / "questions.jsonl")
        for concurrency in concurrencies:
            c = min(concurrency, tasks)
            runs: dict[str, list[dict]] = {s: [] for s in systems}
            for system in _alternating(systems, repeats, concurrency):
                r = systems[system](questions, tasks, c)
                runs[system].append(r)
                order.append(system)
                print(f"c={c} {system:<12} tasks/s {r['tasks_per_s']:.1f} replies/s {r['replies_per_s']:.1f} "
                      f"hops/s {r['hops_per_s']:.1f} cpu {r['cpu_cores']:.2f} cores load {r['load_avg']:.1f}", flush=True)
            base = statistics.median(r["replies_per_s"] for r in runs[next(iter(systems))])
            for system in systems:
                row = {"concurrency": c, "tasks": tasks, "system": system, **{m: spread(r[m] for r in runs[system]) for m in metrics}}
                row["replies_vs_upstream"] = row["replies_per_s"]["median"] / base
                rows.append(row)
    return {"rows": rows, "repeats": repeats, "order": order}


def suite_upstream(quick: bool, repeats: int, tasks: int | None = None, concurrencies: tuple[int, ...] | None = None) -> dict[str, Any]:
    versions = ensure_venv()
    result = _compare(SYSTEMS, tasks or (60 if quick else 2000), concurrencies or ((20,) if quick else (100, 1000)), repeats, METRICS)
    return {**result, "upstream_versions": versions}


def sim_settings() -> dict[str, Any]:
    # 16 slots at time scale 10 hold ~12 replies/s of 1024 tokens (+32 for the extraction):
    # below what either system drives on 2 shared cores, so the LLM is the bottleneck.
    return {"max_num_seqs": SIM_SLOTS, "time_scale": 10, "prefill_tps": 1e6, "tick_ms": 10,
            "output_tokens": {"dist": "fixed", "mean": 4096, "max": 4096}}


def capacity_tokens_per_s(settings: dict[str, Any]) -> float:
    """Completion tokens/s of the server with every slot decoding (its engine's model), in real seconds."""
    b = settings["max_num_seqs"]
    return b * settings["decode_tps_single"] / (1 + settings["decode_alpha"] * (b - 1)) * settings["time_scale"]


def on_server(server: SimLLM, run) -> Any:
    """``run`` against ``server``, its row completed by what the server counted during the run."""
    def measure(questions: Path, tasks: int, concurrency: int) -> dict[str, Any]:
        server.delta()
        r = run(questions, tasks, concurrency, llm_url=server.url, turns=SIM_TURNS, exclude=frozenset({server.pid}))
        sim = server.delta()
        r.update(llm_calls_per_task=sim["completed"] / tasks, llm_tokens_per_task=sim["generated_tokens"] / tasks)
        r["llm_capacity_used"] = r["tasks_per_s"] * r["llm_tokens_per_task"] / capacity_tokens_per_s(server.settings)
        return r

    return measure


def suite_upstream_sim(quick: bool, repeats: int, tasks: int | None = None, concurrencies: tuple[int, ...] | None = None) -> dict[str, Any]:
    versions = ensure_venv()
    server = SimLLM(**sim_settings())
    try:
        systems = {"upstream": on_server(server, run_upstream), "ours": on_server(server, run_ours)}
        result = _compare(systems, tasks or (48 if quick else 2000), concurrencies or ((2 * SIM_SLOTS,) if quick else (2 * SIM_SLOTS, 8 * SIM_SLOTS)),
                          repeats, METRICS + SIM_METRICS)
    finally:
        server.close()
    server_facts = {k: server.settings[k] for k in ("max_num_seqs", "time_scale", "decode_tps_single", "decode_alpha", "prefill_tps")}
    return {**result, "upstream_versions": versions, "turns": SIM_TURNS, "max_tokens": {"reply": SIM_REPLY_TOKENS, "extract": SIM_EXTRACT_TOKENS},
            "server": {**server_facts, "capacity_tokens_per_s": capacity_tokens_per_s(server.settings)}}


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

SIM_COLUMNS = [*COLUMNS[:7],
               ("llm_calls", "LLM calls per task", lambda r: fmt(r["llm_calls_per_task"], 1)),
               ("capacity", "LLM capacity used", lambda r: fmt(r["llm_capacity_used"], 2)),
               *COLUMNS[7:]]
