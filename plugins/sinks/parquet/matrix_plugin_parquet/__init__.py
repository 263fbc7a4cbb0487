"""Parquet sink: the output is a directory of part files, each written atomically.

Every flushed batch becomes one part file, written to a hidden temporary name, fsynced
and renamed into place: a crash (even ``kill -9``) leaves complete part files and at most
a temporary file, which the next open deletes. ``existing_ids`` reads the ``task_id`` and
``status`` columns back, so a resumed run skips what is written. At the end of a run the
small parts are compacted into files with row groups of ``row_group_size`` rows; the
merged file names the parts it replaces in its metadata, so a crash between writing it and
deleting them is finished on the next open instead of duplicating rows.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from matrix_core import ConfigDirSpec, ConfigError, Sink, SinkSpec, hookimpl

from ._encoding import Encoder, conform, decode, unify

__all__ = ["ParquetSink", "iter_parquet_records", "read_parquet_records"]

log = logging.getLogger("matrix.parquet")

REPLACES_KEY = b"matrix.replaces"
CODECS = ("zstd", "snappy", "gzip", "none")


def _parts(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("part-*.parquet") if p.is_file())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_parquet_records(path: str | os.PathLike, include_derived: bool = False) -> Iterator[dict[str, Any]]:
    """Records of a Parquet output directory, part by part (one row group in memory at a time)."""
    import pyarrow.parquet as pq

    for part in _parts(Path(path)):
        f = pq.ParquetFile(part)
        for i in range(f.num_row_groups):
            yield from decode(f.read_row_group(i), include_derived)


def read_parquet_records(path: str | os.PathLike, include_derived: bool = False) -> list[dict[str, Any]]:
    return list(iter_parquet_records(path, include_derived))


def output_dir(config: Mapping[str, Any], suffix: str) -> Path:
    """``sink.path`` as a directory; a workflow's default JSONL file name gets ``suffix`` instead."""
    if not config.get("path"):
        raise ConfigError("sink.path is not set (output.path=DIR)")
    path = Path(str(config["path"])).expanduser()
    for ext in (".jsonl.zst", ".jsonl"):
        if path.name.endswith(ext):
            return path.with_name(path.name[: -len(ext)] + suffix)
    return path


class ParquetSink(Sink):
    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        path = output_dir(config, ".parquet")
        if path.exists() and not path.is_dir():
            raise ConfigError(f"sink.path {path} is a file; the parquet sink writes a directory of part files")
        self.path = path
        self.row_group_size = int(config.get("row_group_size") or 10000)
        self.compact = bool(config.get("compact", True))
        self.compression = str(config.get("compression") or "zstd")
        if self.compression not in CODECS:
            raise ConfigError(f"sink.compression must be one of {', '.join(CODECS)}, got {self.compression!r}")
        if config.get("fsync", "batch") not in ("batch", "none"):
            raise ConfigError(f"sink.fsync must be 'batch' or 'none', got {config.get('fsync')!r}")
        self.fsync = config.get("fsync", "batch") == "batch"
        columns = config.get("columns") or {}
        if not isinstance(columns, Mapping) or not all(isinstance(v, str) for v in columns.values()):
            raise ConfigError("sink.columns must map column names to dotted record paths, e.g. {question: state.question}")
        self.columns = dict(columns)
        self._encoder: Encoder | None = None
        self._buffer: list[Mapping[str, Any]] = []
        self._written_parts: list[Path] = []
        self._token = uuid.uuid4().hex[:8]
        self._next = 0

    @property
    def location(self) -> str:
        return str(self.path)

    # --- reading back -----------------------------------------------------------------
    def _recover(self) -> None:
        """Deletes torn temporaries and finishes a compaction a crash interrupted."""
        import pyarrow.parquet as pq

        if not self.path.is_dir():
            return
        for tmp in self.path.glob(".*.tmp"):
            log.warning("%s: removing %s left by an interrupted write", self.path, tmp.name)
            tmp.unlink()
        for part in _parts(self.path):
            replaced = json.loads((pq.read_schema(part).metadata or {}).get(REPLACES_KEY, b"[]"))
            for name in replaced:
                if (self.path / name).exists():
                    log.warning("%s: finishing an interrupted compaction (%s)", self.path, name)
                    (self.path / name).unlink()

    def existing_ids(self) -> dict[str, str]:
        import pyarrow.parquet as pq

        self._recover()
        ids: dict[str, str] = {}
        if not self.path.is_dir():
            return ids
        for part in _parts(self.path):
            table = pq.read_table(part, columns=["task_id", "status"])
            ids.update(zip(table.column("task_id").to_pylist(), table.column("status").to_pylist()))
        return ids

    def remove(self, task_ids: set[str]) -> None:
        """Rewrites each part holding one of these ids without it (atomic per part)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        for part in _parts(self.path):
            ids = pq.read_table(part, columns=["task_id"]).column("task_id")
            hit = pc.is_in(ids, value_set=pa.array(sorted(task_ids), type=pa.string()))
            if not pc.any(hit).as_py():
                continue
            table = pq.read_table(part)
            kept = table.filter(pc.invert(hit))
            if kept.num_rows:
                self._write_atomically(kept, part)
            else:
                part.unlink()
        _fsync_dir(self.path)

    # --- writing ----------------------------------------------------------------------
    def open(self) -> None:
        import pyarrow.parquet as pq

        self._recover()
        self.path.mkdir(parents=True, exist_ok=True)
        parts = _parts(self.path)
        self._next = max((int(p.name.split("-")[1]) for p in parts), default=-1) + 1
        schema = unify([pq.read_schema(p) for p in parts]) if parts else None
        self._encoder = Encoder(self.columns, schema)

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._buffer.extend(records)

    def flush(self) -> None:
        if not self._buffer:
            return
        table = self._encoder.table(self._buffer)
        self._buffer = []
        self._written_parts.append(self._write_atomically(table, self._new_part()))

    def _new_part(self) -> Path:
        part = self.path / f"part-{self._next:06d}-{self._token}.parquet"
        self._next += 1
        return part

    def _write_atomically(self, table, target: Path, row_group_size: int | None = None) -> Path:
        import pyarrow.parquet as pq

        tmp = target.with_name(f".{target.name}.tmp")
        pq.write_table(table, tmp, compression=self.compression, row_group_size=row_group_size)
        if self.fsync:
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
        if self.fsync:
            _fsync_dir(self.path)
        return target

    def close(self) -> None:
        if self._encoder is None:
            return
        self.flush()
        if self.compact:
            self._compact()
        self._encoder = None

    def _compact(self) -> None:
        """Merges the small parts into files of whole row groups (one row group in memory at a time)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        small = [p for p in _parts(self.path) if pq.read_metadata(p).num_rows < self.row_group_size]
        if len(small) < 2:
            return
        schema = unify([pq.read_schema(p) for p in small])
        schema = schema.with_metadata({**schema.metadata, REPLACES_KEY: json.dumps([p.name for p in small]).encode()})
        target = self._new_part()
        tmp = target.with_name(f".{target.name}.tmp")
        pending: list[pa.Table] = []
        rows = 0
        with pq.ParquetWriter(tmp, schema, compression=self.compression) as writer:
            for part in small:
                pending.append(conform(pq.read_table(part), schema))
                rows += pending[-1].num_rows
                while rows >= self.row_group_size:
                    merged = pa.concat_tables(pending)
                    writer.write_table(merged.slice(0, self.row_group_size), row_group_size=self.row_group_size)
                    pending = [merged.slice(self.row_group_size)]
                    rows = pending[0].num_rows
            if rows:
                writer.write_table(pa.concat_tables(pending), row_group_size=self.row_group_size)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        _fsync_dir(self.path)
        for part in small:  # a crash here is finished by _recover: the merged file names them
            part.unlink()
        _fsync_dir(self.path)


@hookimpl
def register_sinks(register):
    register(SinkSpec("parquet", ParquetSink, "Parquet: a directory of atomically written part files, compacted at the end"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("parquet", Path(__file__).parent / "conf", "sink/parquet"))
