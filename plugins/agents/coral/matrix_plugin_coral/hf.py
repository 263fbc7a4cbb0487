"""``dataset.loader=hf``: rows of a Hugging Face dataset the user already has.

``datasets.load_dataset(name, subset, split=..., streaming=...)``; the library's own
``HF_DATASETS_OFFLINE`` / ``HF_HUB_OFFLINE`` settings apply unchanged. The first row is read
here, before the run starts Ray, so a missing package, dataset or split is one
``ConfigError`` line instead of a failure inside the run.
"""
from __future__ import annotations

import itertools
import os
from typing import Any, Iterator, Mapping

from matrix_core import ConfigError

INSTALL = "pip install datasets"


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"


def load_hf(cfg: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
    name = cfg.get("name")
    if not name:
        raise ConfigError("dataset.name is not set: name the Hugging Face dataset (dataset.name=TIGER-Lab/MMLU-Pro)")
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"dataset.loader=hf needs the 'datasets' package, which is not installed: {INSTALL}") from None
    split = cfg.get("split") or "test"
    where = f"Hugging Face dataset {name!r}" + (f" ({cfg['subset']})" if cfg.get("subset") else "") + f" split {split!r}"
    try:
        ds = datasets.load_dataset(str(name), cfg.get("subset") or None, split=split, streaming=bool(cfg.get("streaming", True)))
        rows = iter(ds)
        first = next(rows, None)
    except Exception as exc:  # the library raises many types (not found, offline, bad split)
        offline = " offline (HF_DATASETS_OFFLINE is set)" if _offline() else ""
        raise ConfigError(f"{where} is not available{offline}: {type(exc).__name__}: {_one_line(exc)}") from None
    if first is None:
        return iter(())
    return _numbered(itertools.chain([first], rows))


def _numbered(rows) -> Iterator[tuple[int, Any]]:
    for number, row in enumerate(rows, start=1):
        yield number, dict(row) if isinstance(row, Mapping) else ValueError(f"expected a mapping, got {type(row).__name__}")
