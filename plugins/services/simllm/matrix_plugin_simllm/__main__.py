"""Run simulated replicas without Ray: ``python -m matrix_plugin_simllm --port 8000 ...``.

Every setting of ``llm/simllm.yaml`` is a flag (``--max-num-seqs 64``,
``--output-tokens-dist fixed``, ``--faults-rate-500 0.1``); values are read as YAML. Replicas
share this process and listen on consecutive ports; a crash fault ends the process (exit 3).
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import yaml

from matrix_core import MatrixError

from . import defaults, settings
from .server import SimServer

SKIP = {"backend", "startup_timeout_s", "deployment"}


def _flags(tree: dict[str, Any], prefix: tuple[str, ...] = ()):
    for key, value in tree.items():
        if not prefix and key in SKIP:
            continue
        if isinstance(value, dict):
            yield from _flags(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def parse(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m matrix_plugin_simllm", description="Simulated OpenAI-compatible LLM server (no model).")
    paths = {}
    for path, value in _flags(defaults()):
        flag = "--" + "-".join(path).replace("_", "-")
        paths[flag[2:].replace("-", "_")] = path
        parser.add_argument(flag, type=yaml.safe_load, default=value, metavar="V", help=f"default: {value}")
    args = vars(parser.parse_args(argv))
    cfg: dict[str, Any] = {}
    for dest, path in paths.items():
        node = cfg
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = args[dest]
    return settings(cfg)


async def serve(s: dict[str, Any]) -> None:
    servers = [SimServer(s, i) for i in range(s["replicas"])]
    for i, server in enumerate(servers):
        port = await server.start(s["host"], s["port"] + i if s["port"] else 0)
        print(f"simllm replica {i}: http://{s['host']}:{port}/v1 (simulated, model {s['model']})", flush=True)
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, done.set)
    await done.wait()
    await asyncio.gather(*(server.close() for server in servers))


def main(argv: list[str] | None = None) -> None:
    try:
        s = parse(argv)
        asyncio.run(serve(s))
    except MatrixError as exc:
        sys.exit(f"simllm: error: {exc}")
    except OSError as exc:
        sys.exit(f"simllm: error: cannot listen: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
