"""The ``corpus`` dataset loader: a file or a directory of shards, streamed, several at once.

Shards are ``.jsonl``, ``.jsonl.zst`` or ``.parquet`` files. ``partitions`` of them are
read at a time and their rows interleaved, so the run works on several partitions at once
(data parallelism) while the driver keeps many tasks of each in flight (task parallelism).
Each row gets ``doc_id = "<shard>:<line>"``: the task id, so resume skips per shard and row
whatever order the shards were read in. Nothing is loaded whole: a JSONL shard is read line
by line, a Parquet shard one ``batch_rows`` batch at a time.
"""
from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any, Iterator, Mapping

from matrix_core import ConfigError

SHARD_SUFFIXES = (".jsonl", ".jsonl.zst", ".parquet")
# Row numbers must be unique across shards for the driver's messages: shard i, line n -> i * STRIDE + n.
STRIDE = 1_000_000_000


class RowError(ValueError):
    """A corpus row that cannot be read."""


def shard_files(path: Path, pattern: str = "*") -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"corpus not found: {path} (dataset.path=FILE_OR_DIR)")
    files = sorted(p for p in path.rglob(pattern) if p.is_file() and p.name.endswith(SHARD_SUFFIXES) and not p.name.startswith("."))
    if not files:
        raise ConfigError(f"{path}: no corpus shards ({', '.join(SHARD_SUFFIXES)}) matching {pattern!r}")
    return files


def _shard_name(root: Path, shard: Path) -> str:
    name = str(shard.relative_to(root)) if root.is_dir() else shard.name
    for suffix in SHARD_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _jsonl_rows(shard: Path) -> Iterator[tuple[int, Any]]:
    with shard.open("rb") as raw:
        if shard.name.endswith(".zst"):
            import io

            import zstandard

            f = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True))
        else:
            f = raw
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield number, RowError(f"invalid JSON ({exc})")
                continue
            yield number, row if isinstance(row, dict) else RowError(f"expected a JSON object, got {type(row).__name__}")


def _parquet_rows(shard: Path, batch_rows: int) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(shard).iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            number += 1
            yield number, row


class Corpus:
    """Iterates the rows of ``partitions`` shards at a time, round robin; bounded memory.

    ``max_buffered_rows`` is the most rows it ever held decoded at once (tests check it).
    """

    def __init__(self, cfg: Mapping[str, Any]):
        if not cfg.get("path"):
            raise ConfigError("dataset.path is not set: point it at a corpus file or a directory of shards")
        self.root = Path(str(cfg["path"])).expanduser()
        self.files = shard_files(self.root, str(cfg.get("pattern") or "*"))
        self.partitions = int(cfg.get("partitions") or 4)
        self.batch_rows = int(cfg.get("batch_rows") or 256)
        if self.partitions < 1 or self.batch_rows < 1:
            raise ConfigError("dataset.partitions and dataset.batch_rows must be >= 1")
        self.text_field = str(cfg.get("text_field") or "text")
        self.id_field = str(cfg.get("id_field") or "doc_id")
        self.max_buffered_rows = 0
        self._buffered = 0

    def _rows(self, index: int, shard: Path) -> Iterator[tuple[int, Any]]:
        name = _shard_name(self.root, shard)
        if shard.name.endswith(".parquet"):
            source = _parquet_rows(shard, self.batch_rows)
            chunk = self.batch_rows  # pyarrow decodes a whole batch at once
        else:
            source = _jsonl_rows(shard)
            chunk = 1
        self._buffered += chunk
        self.max_buffered_rows = max(self.max_buffered_rows, self._buffered)
        try:
            for number, row in source:
                row_number = index * STRIDE + number
                if isinstance(row, Exception):
                    yield row_number, RowError(f"{shard} line {number}: {row}")
                    continue
                text = row.get(self.text_field)
                if not isinstance(text, str) or not text.strip():
                    yield row_number, RowError(f"{shard} line {number}: no {self.text_field!r} text")
                    continue
                if self.id_field in row:  # the corpus's own id stays, under another name
                    row[f"source_{self.id_field}"] = row[self.id_field]
                row[self.id_field] = f"{name}:{number}"
                yield row_number, row
        except OSError as exc:
            yield index * STRIDE, RowError(f"{shard}: unreadable ({exc})")
        finally:
            self._buffered -= chunk

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        waiting = deque(enumerate(self.files))
        active: deque[Iterator[tuple[int, Any]]] = deque()
        while waiting or active:
            while waiting and len(active) < self.partitions:
                active.append(self._rows(*waiting.popleft()))
            shard = active.popleft()
            item = next(shard, None)
            if item is None:
                continue  # exhausted: the next shard takes its place
            active.append(shard)
            yield item


def load_corpus(cfg: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
    """``dataset.loader=corpus``: validates the path now, streams the rows lazily."""
    return iter(Corpus(cfg))
