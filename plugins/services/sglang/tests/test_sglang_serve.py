"""SGLang as a Ray Serve application (``ray.serve.llm`` with Ray's ``SGLangServer``), built from
our config without a GPU.

``test_gpu_double_*`` runs Ray's real ``build_openai_app`` in a subprocess where test doubles
stand in for SGLang's OpenAI protocol classes (``matrix_core._private.engine_doubles``); Ray's
own ``SGLangServer`` class computes the replica's placement. No SGLang, no GPU, no replica.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from matrix_core import ConfigError, DeploymentOptions
from matrix_plugin_sglang.serve_app import SERVER_CLS, llm_config

CFG = {
    "model": "Qwen/Qwen2.5-7B-Instruct",
    "served_model_name": "qwen7",
    "tensor_parallel_size": 2,
    "max_model_len": 16384,
    "mem_fraction_static": 0.8,
    "tool_call_parser": "qwen25",
    "accelerator_type": "H100",
    "extra_args": ["--enable-torch-compile", "--chunked-prefill-size", "4096"],
}
OPTIONS = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 48, "num_gpus": 2}


def test_llm_config_from_our_config():
    c = llm_config(CFG, DeploymentOptions(**OPTIONS))
    assert c["server_cls"] == SERVER_CLS
    assert c["model_loading_config"] == {"model_id": "qwen7", "model_source": "Qwen/Qwen2.5-7B-Instruct"}
    assert c["engine_kwargs"] == {
        "model_path": "Qwen/Qwen2.5-7B-Instruct", "tp_size": 2, "pp_size": 1, "served_model_name": "qwen7",
        "mem_fraction_static": 0.8, "context_length": 16384, "tool_call_parser": "qwen25",
        "enable_torch_compile": True, "chunked_prefill_size": 4096,
    }
    deployment = c["deployment_config"]
    assert deployment["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 48.0, "upscale_delay_s": 30.0, "downscale_delay_s": 600.0}
    assert deployment["ray_actor_options"] == {"num_cpus": 1.0, "resources": {"accelerator_type:H100": 0.001}}
    assert c["runtime_env"]["env_vars"]["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"] == "0"


def test_ray_serve_llm_accepts_the_config():
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig

    c = llm_config(CFG, DeploymentOptions(**OPTIONS))
    checked = LLMConfig(**{k: v for k, v in c.items() if k != "server_cls"})
    assert checked.model_id == "qwen7" and checked.accelerator_type == "H100"
    # The server class is Ray's own, present in the installed Ray (read, not imported: its
    # package imports SGLang).
    import ray

    module, _, cls = SERVER_CLS.partition(":")
    path = Path(ray.__file__).parent.joinpath(*module.split(".")[1:]).with_suffix(".py")
    assert f"class {cls}:" in path.read_text()


@pytest.mark.parametrize("cfg, options, message", [
    ({}, None, "llm.model is not set"),
    ({"model": "m", "tensor_parallel_size": "two"}, None, "tensor_parallel_size must be a whole number"),
    ({"model": "m", "tensor_parallel_size": 2, "pipeline_parallel_size": 2}, {"num_gpus": 2}, "set llm.deployment.num_gpus=4"),
    ({"model": "m", "accelerator_type": "GTX-1080"}, None, "Unsupported accelerator type: GTX-1080"),
])
def test_bad_config_is_one_line(cfg, options, message):
    with pytest.raises(ConfigError, match=message) as info:
        llm_config(cfg, None if options is None else DeploymentOptions(**options))
    assert "\n" not in str(info.value)


def test_gpu_double_build_openai_app():
    proc = subprocess.run(
        [sys.executable, "-m", "matrix_core._private.engine_doubles", "matrix_plugin_sglang.serve_app", json.dumps(CFG), json.dumps(OPTIONS)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    app = json.loads(proc.stdout.strip().splitlines()[-1])
    assert app["ingress"]["cls"] == "OpenAiIngress"
    model = app["models"]["qwen7"]
    assert model["cls"] == "SGLangServer" and model["server_cls"] == "SGLangServer"
    assert model["autoscaling"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 48.0, "initial_replicas": None, "upscale_delay_s": 30.0}
    # One bundle per replica: its CPU, tp*pp GPUs and the H100 label, on one node.
    assert model["placement_group_bundles"] == [{"CPU": 1.0, "GPU": 2, "accelerator_type:H100": 0.001}]
    assert model["placement_group_strategy"] == "STRICT_PACK"
    assert model["env_vars"] == {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "0"}
    assert model["engine_kwargs"]["tp_size"] == 2
