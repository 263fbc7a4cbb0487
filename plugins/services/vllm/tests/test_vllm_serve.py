"""vLLM as a Ray Serve application (``ray.serve.llm``), built from our config without a GPU.

The LLMConfig dict is checked as built and by Ray Serve LLM's own ``LLMConfig`` model (which
imports without vLLM). ``test_gpu_double_*`` runs Ray's real ``build_openai_app`` in a
subprocess where test doubles stand in for vLLM's protocol and argument classes
(``matrix_core._private.engine_doubles``): no vLLM, no GPU, no replica started.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from matrix_core import ConfigError, DeploymentOptions
from matrix_core._private.serve_llm import flags_to_kwargs
from matrix_plugin_vllm.serve_app import llm_config

BIG = {
    "model": "meta-llama/Llama-3.1-70B-Instruct",
    "served_model_name": "llama70",
    "tensor_parallel_size": 4,
    "pipeline_parallel_size": 2,
    "max_model_len": 8192,
    "gpu_memory_utilization": 0.9,
    "tool_call_parser": "llama3_json",
    "accelerator_type": "H100",
    "placement_strategy": "spread",
    "lora": {"path": "s3://bucket/adapters", "max_adapters_per_replica": 4, "max_lora_rank": 32},
    "extra_args": ["--enable-prefix-caching", "--max-num-seqs", "128"],
    "env": {"HF_HOME": "/models"},
}
OPTIONS = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 32, "num_gpus": 8, "num_cpus": 2, "upscale_delay_s": 5}


def test_llm_config_from_our_config():
    c = llm_config(BIG, DeploymentOptions(**OPTIONS))
    assert c["model_loading_config"] == {"model_id": "llama70", "model_source": "meta-llama/Llama-3.1-70B-Instruct"}
    assert c["engine_kwargs"] == {
        "tensor_parallel_size": 4, "pipeline_parallel_size": 2, "max_model_len": 8192, "gpu_memory_utilization": 0.9,
        "enable_auto_tool_choice": True, "tool_call_parser": "llama3_json",
        "enable_lora": True, "max_loras": 4, "max_lora_rank": 32,
        "enable_prefix_caching": True, "max_num_seqs": 128,
    }
    assert c["deployment_config"] == {
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 32.0, "upscale_delay_s": 5.0, "downscale_delay_s": 600.0},
        "ray_actor_options": {"num_cpus": 2.0},  # the GPUs are the placement bundles'
        "health_check_period_s": 10.0, "health_check_timeout_s": 30.0,
    }
    assert c["placement_group_config"] == {"bundle_per_worker": {"GPU": 1.0}, "strategy": "SPREAD"}
    assert c["accelerator_type"] == "H100"
    assert c["lora_config"] == {"dynamic_lora_loading_path": "s3://bucket/adapters", "max_num_adapters_per_replica": 4}
    assert c["runtime_env"] == {"env_vars": {"HF_HOME": "/models"}}


def test_ray_serve_llm_accepts_the_config():
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig

    checked = LLMConfig(**llm_config(BIG, DeploymentOptions(**OPTIONS)))
    assert checked.model_id == "llama70"
    assert checked.accelerator_config.kind == "gpu"
    assert checked.lora_config.dynamic_lora_loading_path == "s3://bucket/adapters"
    assert checked.max_request_context_length == 8192
    small = llm_config({"model": "Qwen/Qwen2.5-0.5B-Instruct"})  # default options: one replica, one GPU
    assert small["deployment_config"]["autoscaling_config"]["min_replicas"] == small["deployment_config"]["autoscaling_config"]["max_replicas"] == 1
    assert "lora_config" not in small and "accelerator_type" not in small
    LLMConfig(**small)


def test_flags_to_kwargs():
    assert flags_to_kwargs(["--max-model-len", "8192", "--enforce-eager", "--dtype=bfloat16", "--no-enable-prefix-caching",
                            "--speculative-config", '{"method": "ngram"}']) == {
        "max_model_len": 8192, "enforce_eager": True, "dtype": "bfloat16", "enable_prefix_caching": False,
        "speculative_config": {"method": "ngram"},
    }
    with pytest.raises(ConfigError, match="expected a --flag at position 0"):
        flags_to_kwargs(["8192"])


@pytest.mark.parametrize("cfg, options, message", [
    ({}, None, "llm.model is not set"),
    ({"model": "m", "placement_strategy": "ROUND"}, None, "placement_strategy must be one of"),
    ({"model": "m", "tensor_parallel_size": 2}, {"num_gpus": 1}, "llm.deployment.num_gpus=1 but one vllm replica runs .* = 2 engine workers"),
    ({"model": "m", "tensor_parallel_size": 0}, None, "tensor_parallel_size must be at least 1"),
    ({"model": "m", "lora": {"max_adapters_per_replica": 2}}, None, "llm.lora.path is not set"),
    ({"model": "m", "lora": {"path": "/local/adapters"}}, None, "llm.lora.path must start with s3://"),
    ({"model": "m", "accelerator_type": "GTX-1080"}, None, "Unsupported accelerator type: GTX-1080"),
])
def test_bad_config_is_one_line(cfg, options, message):
    with pytest.raises(ConfigError, match=message) as info:
        llm_config(cfg, None if options is None else DeploymentOptions(**options))
    assert "\n" not in str(info.value)


def build_with_engine_doubles(module: str, cfg: dict, options: dict, ray_address: str) -> dict:
    """Ray's real build_openai_app on our config, vLLM/SGLang classes replaced by test doubles."""
    proc = subprocess.run(
        [sys.executable, "-m", "matrix_core._private.engine_doubles", module, json.dumps(cfg), json.dumps(options)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ray_address},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_gpu_double_build_openai_app(matrix_ray):
    # The vLLM replica's options read the driver's runtime env, which joins a Ray cluster.
    app = build_with_engine_doubles("matrix_plugin_vllm.serve_app", BIG, OPTIONS, matrix_ray.get_runtime_context().gcs_address)
    assert app["ingress"]["cls"] == "OpenAiIngress"
    model = app["models"]["llama70"]
    assert model["cls"] == "LLMServer"
    assert model["autoscaling"] == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 32.0, "initial_replicas": None, "upscale_delay_s": 5.0}
    # tp 4 x pp 2 = 8 engine workers, one GPU bundle each, spread over nodes, H100 only; the
    # replica actor's own CPU shares the first bundle.
    bundles = model["placement_group_bundles"]
    assert len(bundles) == 8 and all(b["GPU"] == 1.0 and b["accelerator_type:H100"] == 0.001 for b in bundles)
    assert [b.get("CPU", 0) for b in bundles] == [2.0] + [0] * 7  # the replica actor's CPUs, once
    assert model["placement_group_strategy"] == "SPREAD"
    assert model["engine_kwargs"]["tool_call_parser"] == "llama3_json"
    assert model["lora_paths"] == "s3://bucket/adapters"
    assert model["env_vars"]["HF_HOME"] == "/models"


def test_composed_config_reserves_tp_gpus_per_replica():
    """`matrix services start NAME llm=vllm ...` composes llm.deployment.num_gpus from the yaml
    (tensor_parallel_size); what the core checks the cluster against is what Serve gets."""
    from matrix_core._private.serving import deployment_options
    from matrix_core._private.services_cli import compose_llm

    section = compose_llm(["llm=vllm", "llm.model=Qwen/Qwen2.5-7B-Instruct", "llm.tensor_parallel_size=2", "llm.deployment.max_replicas=3"])
    options = deployment_options(section, "qwen")
    assert options.replica_demand() == {"CPU": 1.0, "GPU": 2.0}
    assert (options.min_replicas, options.max_replicas, options.target_ongoing_requests) == (1, 3, 64.0)
    c = llm_config({k: v for k, v in section.items() if k not in ("client", "deployment")}, options)
    assert c["engine_kwargs"]["tensor_parallel_size"] == 2
    assert c["deployment_config"]["autoscaling_config"]["max_replicas"] == 3
    # Pipeline stages need their GPUs counted too: the mismatch is named with the number to set.
    section = compose_llm(["llm=vllm", "llm.model=m", "llm.tensor_parallel_size=2", "llm.pipeline_parallel_size=2"])
    with pytest.raises(ConfigError, match="set llm.deployment.num_gpus=4"):
        llm_config({k: v for k, v in section.items() if k not in ("client", "deployment")}, deployment_options(section, "m"))
