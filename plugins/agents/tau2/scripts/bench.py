"""tau2 on Matrix: throughput at high concurrency on the simulated LLM, memory per task, and
the average reward on the embedded model.

    python plugins/agents/tau2/scripts/bench.py sim --tasks 1000       # llm=simllm, 1,000 tasks at once
    python plugins/agents/tau2/scripts/bench.py memory                 # snapshot / orchestrator sizes
    python plugins/agents/tau2/scripts/bench.py embedded --domain mock # reward on SmolLM2 (minutes)

``sim``: the simulator's replies are filler words, so the user simulator never says a stop
token; ``agents.user.stop_after=N`` makes it send ``###STOP###`` instead of its (N+1)-th
message (default 4), so every conversation is greeting + 4 user / 4 assistant turns + stop,
then scored. Airline tasks x trials give the task count; all are in flight at once.
RSS is summed over the processes of the run's own Ray (found by its temp dir), sampled.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path


def _rss_sampler(marker: str, samples: list[int], stop: threading.Event) -> None:
    import psutil

    while not stop.wait(0.5):
        total = 0
        for p in psutil.process_iter(["cmdline", "memory_info"]):
            try:
                if marker in " ".join(p.info["cmdline"] or []) and p.info["memory_info"] is not None:
                    total += p.info["memory_info"].rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        samples.append(total)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def bench_sim(args) -> dict:
    import matrix_core

    temp = tempfile.mkdtemp(prefix="t2b", dir="/tmp")
    out = Path(temp) / "sim.jsonl"
    trials = max(1, -(-args.tasks // 50))
    overrides = [
        "llm=simllm", f"llm.time_scale={args.time_scale}", f"llm.max_num_seqs={args.max_num_seqs}", f"llm.prefill_tps={args.prefill_tps}", "domain=airline",
        f"run.trials={trials}", f"dataset.limit={-(-args.tasks // trials)}", f"run.max_concurrent_tasks={args.tasks}",
        f"agents.user.stop_after={args.user_turns}", "max_steps=100", f"output.path={out}", "run.progress=off",
        f"run.ray_temp_dir={temp}", f"run.num_cpus={args.num_cpus}",
        "agents.assistant.max_in_flight=4096", "agents.user.max_in_flight=4096", "agents.evaluator.max_in_flight=4096",
    ]
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(temp, samples, stop), daemon=True)
    sampler.start()
    started = time.perf_counter()
    summary = matrix_core.run("tau2", overrides)
    wall = time.perf_counter() - started
    stop.set()
    records = _records(out)
    tokens = sum(r["usage"]["total_tokens"] for r in records)
    completion = sum(u.get("completion_tokens", 0) for r in records for k, u in r["usage"].items() if isinstance(u, dict))
    return {
        "tasks": len(records), "done": summary.done, "failed": summary.failed, "peak_in_flight": summary.peak_in_flight,
        "run_wall_s": round(summary.wall_s, 2), "wall_with_startup_s": round(wall, 2),
        "trajectories_per_s": round(summary.done / summary.wall_s, 1),
        "tokens_per_s": round(tokens / summary.wall_s), "completion_tokens_per_s": round(completion / summary.wall_s),
        "tokens_per_trajectory": round(tokens / max(len(records), 1)),
        "peak_rss_mib_all_ray_processes": round(max(samples, default=0) / 2**20),
        "terminations": summary.metrics and {k: v for k, v in summary.metrics.items() if k.startswith("termination")},
        "time_scale": args.time_scale, "prefill_tps": args.prefill_tps, "user_turns": args.user_turns,
    }


def bench_memory(args) -> dict:
    """Bytes a task carries: the environment delta after its gold actions, and the pickled orchestrator."""
    from ray import cloudpickle

    from matrix_plugin_tau2 import Tau2Orchestrator, initial_environment, load_tasks
    from matrix_plugin_tau2.env import get_domain

    out = {}
    for name in ("airline", "retail", "telecom", "mock"):
        domain = get_domain(name)
        tasks = load_tasks(name, "base" if name != "mock" else None)
        snaps, orchs = [], []
        for task in tasks:
            env = initial_environment(domain, task)
            env.replay((task.get("evaluation_criteria") or {}).get("actions") or [])
            snaps.append(len(json.dumps(env.snapshot())))
            o = Tau2Orchestrator.from_row({"id": task["id"], "domain": name, "task": task}, row_key=str(task["id"]), trial=0, config={})
            o.state["snapshot"] = env.snapshot()
            orchs.append(len(cloudpickle.dumps(o)))
        out[name] = {"tasks": len(tasks), "snapshot_bytes_mean": round(sum(snaps) / len(snaps)), "snapshot_bytes_max": max(snaps),
                     "orchestrator_pickle_bytes_mean": round(sum(orchs) / len(orchs)), "db_json_bytes": len(json.dumps(domain.db))}
    return out


def bench_embedded(args) -> dict:
    import subprocess

    out = Path(tempfile.mkdtemp(prefix="t2e", dir="/tmp")) / f"{args.domain}.jsonl"
    cmd = ["matrix", "run", "tau2", f"domain={args.domain}", f"max_steps={args.max_steps}", f"output.path={out}", "llm.port=0", "run.progress=off"]
    if args.task_ids:
        cmd.append(f"task_ids=[{args.task_ids}]")
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-2000:])
    records = _records(out)
    rewards = [r["reward"] for r in records if r.get("reward") is not None]
    terminations: dict[str, int] = {}
    for r in records:
        terminations[r.get("termination_reason") or "?"] = terminations.get(r.get("termination_reason") or "?", 0) + 1
    tool_calls = sum(bool(m.get("tool_calls")) for r in records for m in r["messages"] if m["role"] == "assistant")
    return {"domain": args.domain, "tasks": len(records), "avg_reward": sum(rewards) / max(len(rewards), 1), "terminations": terminations,
            "assistant_tool_call_messages": tool_calls, "wall_s": round(time.perf_counter() - started, 1), "max_steps": args.max_steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sim = sub.add_parser("sim")
    sim.add_argument("--tasks", type=int, default=1000)
    sim.add_argument("--user-turns", type=int, default=4)
    sim.add_argument("--time-scale", type=float, default=10.0)
    sim.add_argument("--max-num-seqs", type=int, default=1024)
    sim.add_argument("--num-cpus", type=int, default=2)
    sim.add_argument("--prefill-tps", type=float, default=8000, help="the simulator's prompt tokens/s (its default 8000 bounds a policy-sized prompt)")
    sub.add_parser("memory")
    emb = sub.add_parser("embedded")
    emb.add_argument("--domain", default="mock")
    emb.add_argument("--task-ids", default="")
    emb.add_argument("--max-steps", type=int, default=30)
    args = parser.parse_args()
    result = {"sim": bench_sim, "memory": bench_memory, "embedded": bench_embedded}[args.what](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    main()
