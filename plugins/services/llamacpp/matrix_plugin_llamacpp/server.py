"""The Ray actor that hosts llama.cpp's HTTP server in-process (via xllamacpp).

Kept in its own module so Ray pickles the class by reference and a worker imports it
without the plugin's hook module (and without importing xllamacpp in the driver).
"""
from __future__ import annotations

from typing import Any, Mapping


class LlamaServer:
    """Owns one ``xllamacpp.Server``; killing the actor's process stops the server."""

    def __init__(self, settings: Mapping[str, Any], owner: str):
        import xllamacpp

        self.owner = owner
        p = xllamacpp.CommonParams()
        p.model.path = settings["model_path"]
        p.model_alias = {settings["alias"]}
        p.hostnames = [settings["host"]]
        p.port = int(settings["port"])
        p.n_parallel = int(settings["n_parallel"])
        p.n_ctx = int(settings["ctx_size"])  # split evenly across the slots (kv_unified is off)
        p.cpuparams.n_threads = p.cpuparams_batch.n_threads = int(settings["threads"])
        p.cont_batching = True
        p.cache_ram_mib = int(settings["cache_ram_mib"])  # llama.cpp's default (8 GiB) is most of a small box
        p.endpoint_metrics = True
        p.ui = False
        p.warmup = False  # saves seconds at start; the first request pays a few ms instead
        p.verbosity = int(settings["verbosity"])
        if settings.get("chat_template"):
            p.chat_template = settings["chat_template"]  # replaces the GGUF's (jinja is on by default)
        try:
            # Returns once the model is loaded and the socket listens.
            self._server = xllamacpp.Server(p)
        except RuntimeError as exc:
            # xllamacpp's message is generic; the cause is in llama.cpp's log (stderr of this worker).
            raise RuntimeError(f"{exc} (model {settings['model_path']}, {settings['host']}:{settings['port']})") from None

    def info(self) -> dict[str, Any]:
        return {"owner": self.owner, "address": self._server.listening_address}
