"""Dataset loaders the core lacks: Parquet files and Hugging Face ``datasets`` on disk.

(``jsonl`` and ``csv`` are built in; ``corpus``, a directory of shards, comes with
matrix-plugin-naturalreasoning.) Both stream: Parquet one record batch at a time, a
``datasets`` directory row by row over its memory-mapped Arrow files. Nothing is fetched
from a hub.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

from matrix_core import ConfigError


def _path(cfg: Mapping[str, Any], what: str) -> Path:
    if not cfg.get("path"):
        raise ConfigError(f"dataset.path is not set: point it at {what}")
    return Path(str(cfg["path"])).expanduser()


def load_parquet(cfg: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
    """``dataset.path``: a .parquet file, or a directory of them (read in name order)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("dataset.loader=parquet needs pyarrow: pip install 'matrix-plugin-generate[parquet]'") from None
    path = _path(cfg, "a .parquet file or a directory of them")
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise ConfigError(f"dataset.path={str(path)!r}: no parquet file there")
    batch_rows = int(cfg.get("batch_rows") or 1024)

    def rows() -> Iterator[tuple[int, Any]]:
        number = 0
        for file in files:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_rows):
                for row in batch.to_pylist():
                    number += 1
                    yield number, row

    return rows()


def load_hf_disk(cfg: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
    """``dataset.path``: a ``save_to_disk`` directory (a Dataset, or a DatasetDict with
    ``dataset.split``, default ``train``)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("dataset.loader=hf_disk needs the datasets package: pip install 'matrix-plugin-generate[hf]'") from None
    path = _path(cfg, "a directory written by datasets' save_to_disk")
    if not path.is_dir():
        raise ConfigError(f"dataset.path={str(path)!r}: not a directory written by datasets' save_to_disk")
    try:
        data = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"dataset.path={str(path)!r}: {exc}") from None
    if isinstance(data, datasets.DatasetDict):
        split = str(cfg.get("split") or "train")
        if split not in data:
            raise ConfigError(f"dataset.split={split!r} is not in {path} (splits: {', '.join(data)})")
        data = data[split]
    return ((i + 1, row) for i, row in enumerate(data))
