"""python -m benchmarks run [SUITE ...] [--quick] [--repeats N]

Suites: upstream (fair-matrix 0.2.6, the paper's system, vs ours on Coral), upstream_sim (the
same, both calling one simllm server of the same capacity), scaleout (hops/s vs
agent hosts against one asyncio controller), simfit (simllm fitted to llama.cpp's curve), scheduling (Matrix vs Ray Data / asyncio controller / thread pool on one simulated
LLM capacity), overhead (alias core: no-I/O hops vs raw Ray calls), scale (1k-50k tasks in
flight), offload (hop cost vs history size), realmodel (embedded llama.cpp vs a load
generator), durability, protocol, client, servepaths (Serve proxy vs direct vs
DeploymentHandle per LLM call). ``all`` = every one. Each suite measures its
baselines in the same run, prints a table and writes benchmarks/results/<suite>.json and
.png; ``python -m benchmarks.report`` prints every table as Markdown.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import time

from ._common import RESULTS, machine, save, table

SUITES = ("upstream", "upstream_sim", "scheduling", "scaleout", "simfit", "overhead", "scale", "offload", "realmodel", "durability", "protocol", "client", "servepaths")
ALIASES = {"core": "overhead"}


def _suite(name: str):
    from . import legacy, offload, overhead, realmodel, scale, scaleout, scheduling, servepaths, simfit, upstream

    return {
        "upstream": (upstream.suite_upstream, upstream.COLUMNS),
        "upstream_sim": (upstream.suite_upstream_sim, upstream.SIM_COLUMNS),
        "scaleout": (scaleout.suite_scaleout, scaleout.COLUMNS),
        "simfit": (simfit.suite_simfit, simfit.COLUMNS),
        "scheduling": (scheduling.suite_scheduling, scheduling.COLUMNS),
        "overhead": (overhead.suite_overhead, overhead.COLUMNS),
        "scale": (scale.suite_scale, scale.COLUMNS),
        "offload": (offload.suite_offload, offload.COLUMNS),
        "realmodel": (realmodel.suite_realmodel, realmodel.COLUMNS),
        "durability": (legacy.suite_durability, legacy.DURABILITY_COLUMNS),
        "protocol": (legacy.suite_protocol, legacy.PROTOCOL_COLUMNS),
        "client": (legacy.suite_client, legacy.CLIENT_COLUMNS),
        "servepaths": (servepaths.suite_servepaths, servepaths.COLUMNS),
    }[name]


def parse(argv: list[str]) -> argparse.Namespace:
    if argv and argv[0] == "run":
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="python -m benchmarks run", description=__doc__.split("\n\n")[1])
    parser.add_argument("suites", nargs="*", default=["scheduling"], help=f"any of: all, {', '.join(SUITES)}, core")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke test (what the test suite runs)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement, in random order; medians with min/max (default 5, quick 1)")
    parser.add_argument("--concurrency", type=lambda v: tuple(int(x) for x in v.split(",")), default=None,
                        help="tasks in flight per point, comma-separated, for upstream, upstream_sim and scheduling (default: each suite's own)")
    parser.add_argument("--hosts", type=lambda v: tuple(int(x) for x in v.split(",")), default=None,
                        help="agent host counts for scaleout, comma-separated (default 1,2,4)")
    parser.add_argument("--tasks", type=int, default=None, help="tasks per point for upstream, upstream_sim, scheduling and scaleout (default 2000; less to fit a time budget)")
    args = parser.parse_args(argv)
    names = []
    for s in args.suites:
        if s == "all":
            names += SUITES
            continue
        s = ALIASES.get(s, s)
        if s not in SUITES:
            parser.error(f"unknown suite {s!r}; available: all, {', '.join(SUITES)}, core")
        names.append(s)
    args.suites = list(dict.fromkeys(names))
    args.repeats = args.repeats or (1 if args.quick else 5)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def run_suites(suites: list[str], quick: bool, repeats: int, command: str, tasks: int | None = None, **sizes) -> dict[str, dict]:
    """Run suites on an already initialised Ray; returns their results (also saved)."""
    from .overhead import run_matrix

    run_matrix("relay", ["dataset.size=500", "run.hosts=2"])  # warm-up: worker processes, imports, file cache
    facts = machine()
    out = {}
    for name in suites:
        fn, columns = _suite(name)
        started = time.time()
        accepted = inspect.signature(fn).parameters
        given = {k: v for k, v in {"tasks": tasks, **sizes}.items() if v is not None and k in accepted}
        result = fn(quick, repeats, **given)
        figure = result.pop("figure", None)
        result.update(machine=facts, command=command, quick=quick, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      seconds=round(time.time() - started))
        result["table"] = table(result["rows"], columns)
        path = save(name, result, figure)
        print(f"\n{result['table']}\n{name}: {result['seconds']}s, results in {path}" + (f" and {path.with_suffix('.png')}" if figure else ""), flush=True)
        out[name] = result
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    import ray

    for attempt in range(3):  # on a saturated machine the raylet can miss Ray's fixed 30 s start-up wait
        try:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", _node_ip_address="127.0.0.1")
            break
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for this
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
            ray.shutdown()
    RESULTS.mkdir(exist_ok=True)
    try:
        run_suites(args.suites, args.quick, args.repeats, "python -m benchmarks " + " ".join(argv), args.tasks,
                   concurrencies=args.concurrency, hosts=args.hosts)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
