"""Why llama.cpp answers SmolLM2's tool requests with text, and the template override that lets
its server parse tool calls natively; real server, real model (``llm``)."""
from __future__ import annotations

import asyncio

import httpx
import pytest

import matrix_plugin_llamacpp as plugin
from matrix_core import ConfigError, LLMClient

needs_model = pytest.mark.skipif(plugin._bundled_model_dir() is None, reason=f"model not installed: {plugin.INSTALL}")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_unknown_chat_template_is_one_line():
    with pytest.raises(ConfigError, match=r"llm.chat_template=nope: neither a bundled template \(chatml-tools\) nor a file"):
        plugin._settings({"chat_template": "nope"})
    assert "<tool_call>" in plugin._settings({"chat_template": "chatml-tools"})["chat_template"]


def prompt_tokens(base: str, tools) -> int:
    body = {"messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 1, **({"tools": tools} if tools else {})}
    return httpx.post(base + "/v1/chat/completions", json=body, timeout=300).json()["usage"]["prompt_tokens"]


def probed_mode(endpoints) -> str:
    async def go():
        client = LLMClient(endpoints, timeout_s=300, max_retries=0, tool_calling="auto")
        try:
            await client.chat([{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS, max_tokens=32, temperature=0)
            return client.tool_calling.resolved
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.mark.llm
@needs_model
@pytest.mark.parametrize("template, renders_tools", [(None, False), ("chatml-tools", True)])
def test_tools_reach_the_prompt_only_with_a_template_that_renders_them(matrix_ray, template, renders_tools):
    handle = plugin.start_llamacpp({"port": 0, "n_parallel": 1, "ctx_size": 2048, "chat_template": template})
    try:
        base = handle.endpoints[0].base_url[: -len("/v1")]  # through Serve's proxy: every path reaches llama.cpp
        caps = str(httpx.get(base + "/props", timeout=30).json()["chat_template_caps"])
        assert ("'supports_tools': True" in caps) is renders_tools
        # The GGUF's template never mentions tools: llama.cpp drops them from the prompt, silently.
        assert (prompt_tokens(base, TOOLS) > prompt_tokens(base, None)) is renders_tools
        # Either way SmolLM2-135M answers in text, so auto falls back to prompted tool calling.
        assert probed_mode(handle.endpoints) == "prompted"
    finally:
        handle.stop()
