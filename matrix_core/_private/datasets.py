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
                except RecursionError:
                    yield number, RowError("JSON nested too deep to read")
                    continue
                if not isinstance(row, dict):
                    yield number, RowError(f"expected a JSON object, got {type(row).__name__}")
                    continue
                yield number, row

    return rows()


CSV_FIELD_LIMIT = 64 << 20  # Python's csv default (128 KiB) is smaller than many a document cell


def load_csv(cfg: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
    path = _open(cfg)

    def rows() -> Iterator[tuple[int, Any]]:
        csv.field_size_limit(CSV_FIELD_LIMIT)
        # Decoded line by line with surrogateescape, so bytes that are not UTF-8 fail their
        # own row (found below) instead of the whole file at the next read.
        with path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.reader(f)
            try:
                header = next(reader, None)
            except csv.Error as exc:
                raise ConfigError(f"{path}: unreadable CSV header ({exc})") from None
            if header is None:
                return
            if _not_utf8(header):
                raise ConfigError(f"{path}: the CSV header is not UTF-8 text")
            number = 1
            while True:
                number += 1
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield number, RowError(f"unreadable CSV row ({exc})")
                    continue
                if not values:
                    number -= 1  # a blank line is no row
                    continue
                if len(values) != len(header):
                    yield number, RowError(f"expected {len(header)} columns, got {len(values)}")
                elif _not_utf8(values):
                    yield number, RowError("not UTF-8 text (the file's encoding must be UTF-8)")
                else:
                    yield number, dict(zip(header, values))

    return rows()


def _not_utf8(values: list[str]) -> bool:
    return any("\udc80" <= ch <= "\udcff" for v in values for ch in v)


def load_range(cfg: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
    """``size`` synthetic rows ``{"id": i, "n": i}``: for benchmarks and smoke tests."""
    size = cfg.get("size")
    if size is None or int(size) < 0:
        raise ConfigError("dataset.size must be set to a count >= 0 for dataset.loader=range")
    return ((i + 1, {"id": i, "n": i}) for i in range(int(size)))
