"""Built-in dataset loaders. Each yields ``(row_number, row)`` lazily, or an exception for a bad row."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import ConfigError


class RowError(ValueError):
    """A dataset row that cannot be read."""


def _open(cfg: Mapping[str, Any]) -> Path:
    path = cfg.get("path")
    if not path:
        raise ConfigError("dataset.path is not set: point it at a file (dataset.path=FILE)")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise ConfigError(f"dataset file not found: {p}")
    return p


def load_jsonl(cfg: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
    path = _open(cfg)

    def rows() -> Iterator[tuple[int, Any]]:
        with path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    yield number, RowError(f"invalid JSON ({exc})")
                    continue
                if not isinstance(row, dict):
                    yield number, RowError(f"expected a JSON object, got {type(row).__name__}")
                    continue
                yield number, row

    return rows()


def load_csv(cfg: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
    path = _open(cfg)

    def rows() -> Iterator[tuple[int, Any]]:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for number, row in enumerate(reader, start=2):
                if None in row or any(v is None for v in row.values()):
                    yield number, RowError(f"expected {len(reader.fieldnames or [])} columns")
                    continue
                yield number, row

    return rows()


def load_range(cfg: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
    """``size`` synthetic rows ``{"id": i, "n": i}``: for benchmarks and smoke tests."""
    size = cfg.get("size")
    if size is None or int(size) < 0:
        raise ConfigError("dataset.size must be set to a count >= 0 for dataset.loader=range")
    return ((i + 1, {"id": i, "n": i}) for i in range(int(size)))
