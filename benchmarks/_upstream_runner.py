"""Runs upstream fair-matrix's P2P Coral workflow: its dummy agents (``coral_mmlu_pro_dummy``),
or, given an LLM URL, its LLM agents (``coral_mmlu_pro``) against that OpenAI-compatible server.

Executed by the upstream venv's interpreter (``benchmarks/.upstream/venv``), never imported by
ours: it starts its own Ray (the upstream's pinned version, a cluster of its own), composes
upstream's Hydra config with a local JSON dataset (no hub), runs upstream's
``P2PAgentFramework`` and prints one JSON line with what the records say.

    python _upstream_runner.py QUESTIONS.jsonl OUT.jsonl TASKS CONCURRENCY [LLM_URL MAX_TURNS]
"""
import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def register_server(url: str, model: str) -> None:
    """Answers upstream's service registry lookup with ``url`` for every LLM service.

    Upstream's ``LLMResourceClient`` asks ``Cli.get_app_metadata`` (a Ray Serve / Slurm
    registry) for its endpoint, in the driver, and hands the result's ``updater`` to its agent
    actors. This builds the metadata the way upstream's own ``AppApi.get_app_metadata`` does
    for an app served outside Ray Serve (``serve_app=False``: its ``EndpointCache`` returns the
    head host with the app's port), so upstream's endpoint cache, client and retries are its own.
    """
    from matrix import Cli
    from matrix.client.endpoint_cache import EndpointCache
    from matrix.common.cluster_info import ClusterInfo

    where = urlsplit(url)
    info = ClusterInfo(hostname=where.hostname, sglang_http_port=where.port, dashboard_port=0)
    template = f"http://{{host}}:{where.port}/v1"

    def get_app_metadata(self, app_name, endpoint_ttl_sec=5, model_name=None, head_only=False):
        cache = EndpointCache(info, app_name, template, ttl=endpoint_ttl_sec, serve_app=False)
        return {"name": app_name, "model_name": model, "endpoint_template": template,
                "endpoints": {"head": template.format(host=where.hostname), "workers": [], "updater": cache}}

    Cli.get_app_metadata = get_app_metadata


def main() -> None:
    questions, out, tasks, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    llm_url, max_turns = (sys.argv[5], int(sys.argv[6])) if len(sys.argv) > 6 else (None, None)
    import ray
    from hydra import compose, initialize_config_dir

    # Upstream asks one CPU per agent actor and two for the sink: logical CPUs, so the team
    # fits on this machine as it would on a node (the OS still has its real cores).
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level="ERROR", _node_ip_address="127.0.0.1")
    import matrix.agents
    from matrix.agents.p2p_agents import P2PAgentFramework

    overrides = ["dataset.name=json", f"dataset.data_files={questions}", "dataset.split=train", f"dataset.cut_off={tasks}",
                 f"max_concurrent_tasks={concurrency}", f"output.path={out}"]
    if llm_url:
        register_server(llm_url, "simllm")
        overrides.append(f"orchestrator.max_turns={max_turns}")
    conf = os.path.join(list(matrix.agents.__path__)[0], "config")
    with initialize_config_dir(config_dir=conf, version_base=None):
        cfg = compose("coral_mmlu_pro" if llm_url else "coral_mmlu_pro_dummy", overrides=overrides)
    started = time.time()
    asyncio.run(P2PAgentFramework(0, cfg).run_simulation())
    wall = time.time() - started
    ray.shutdown()
    print("UPSTREAM_RESULT " + json.dumps({"wall_s": wall, "ray": ray.__version__}), flush=True)


if __name__ == "__main__":
    main()
