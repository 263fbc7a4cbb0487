"""Runs upstream fair-matrix's P2P Coral workflow with its dummy agents (``coral_mmlu_pro_dummy``).

Executed by the upstream venv's interpreter (``benchmarks/.upstream/venv``), never imported by
ours: it starts its own Ray (the upstream's pinned version, a cluster of its own), composes
upstream's Hydra config with a local JSON dataset (no hub), runs upstream's
``P2PAgentFramework`` and prints one JSON line with what the records say.

    python _upstream_runner.py QUESTIONS.jsonl OUT.jsonl TASKS CONCURRENCY
"""
import asyncio
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    questions, out, tasks, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    import ray
    from hydra import compose, initialize_config_dir

    # Upstream asks one CPU per agent actor and two for the sink: logical CPUs, so the team
    # fits on this machine as it would on a node (the OS still has its real cores).
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level="ERROR", _node_ip_address="127.0.0.1")
    import matrix.agents
    from matrix.agents.p2p_agents import P2PAgentFramework

    conf = os.path.join(list(matrix.agents.__path__)[0], "config")
    with initialize_config_dir(config_dir=conf, version_base=None):
        cfg = compose("coral_mmlu_pro_dummy", overrides=[
            "dataset.name=json", f"dataset.data_files={questions}", "dataset.split=train", f"dataset.cut_off={tasks}",
            f"max_concurrent_tasks={concurrency}", f"output.path={out}",
        ])
    started = time.time()
    asyncio.run(P2PAgentFramework(0, cfg).run_simulation())
    wall = time.time() - started
    ray.shutdown()
    print("UPSTREAM_RESULT " + json.dumps({"wall_s": wall, "ray": ray.__version__}), flush=True)


if __name__ == "__main__":
    main()
