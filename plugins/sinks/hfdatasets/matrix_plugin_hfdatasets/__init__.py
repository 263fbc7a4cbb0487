"""Hugging Face ``datasets`` sink: a ``save_to_disk`` directory, optionally pushed to the Hub.

``save_to_disk`` writes a whole dataset at once, so it cannot be the durable record of a
run that may be killed: batches go to Parquet part files in ``PATH.parts/`` (the
:mod:`matrix_plugin_parquet` scheme: atomic, read back on resume), and ``close`` builds the
dataset from all parts and swaps it into ``PATH`` atomically. A crashed run leaves the parts;
the rerun adds the rest and saves the whole dataset. Nested fields are JSON text columns
(``load_records`` decodes them); ``columns`` lifts chosen fields out as typed columns.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

from matrix_core import ConfigDirSpec, ConfigError, Sink, SinkSpec, hookimpl
from matrix_plugin_parquet import ParquetSink, output_dir

__all__ = ["HFDatasetsSink", "load_records"]

log = logging.getLogger("matrix.hfdatasets")

_JSON_COLUMNS = "matrix.json_columns"
_DERIVED_COLUMNS = "matrix.derived_columns"


def load_records(path: str | os.PathLike, include_derived: bool = False) -> list[dict[str, Any]]:
    """Records of a dataset this sink saved, with the JSON columns decoded."""
    import datasets

    ds = datasets.load_from_disk(str(path))
    meta = json.loads(ds.info.description or "{}")
    json_cols = set(meta.get(_JSON_COLUMNS, []))
    derived = set() if include_derived else set(meta.get(_DERIVED_COLUMNS, []))
    out = []
    for row in ds:
        row = {k: v for k, v in row.items() if k not in derived}
        for name in json_cols.intersection(row):
            if row[name] is not None:
                row[name] = json.loads(row[name])
        out.append(row)
    return out


class HFDatasetsSink(Sink):
    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        path = output_dir(config, ".hf")
        self.path = path
        self.split = str(config.get("split") or "train")
        self.repo = config.get("push_to_hub") or None
        self.private = bool(config.get("private", True))
        self.token_env = str(config.get("token_env") or "HF_TOKEN")
        staging = {k: v for k, v in config.items() if k in ("row_group_size", "compression", "fsync", "columns")}
        self.parts = ParquetSink({**staging, "path": str(path) + ".parts", "compact": True})

    @property
    def location(self) -> str:
        return str(self.path)

    def _token(self) -> str | None:
        token = os.environ.get(self.token_env)
        if token:
            return token
        try:
            from huggingface_hub import get_token
        except ImportError:
            return None
        return get_token()

    def existing_ids(self) -> dict[str, str]:
        if self.repo and not self._token():
            # Before any work: finding out at the end of a long run would be too late.
            raise ConfigError(f"sink.push_to_hub={self.repo} but no Hugging Face token: set ${self.token_env} or run `hf auth login`")
        return self.parts.existing_ids()

    def remove(self, task_ids: set[str]) -> None:
        self.parts.remove(task_ids)

    def open(self) -> None:
        self.parts.open()

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.parts.write(records)

    def flush(self) -> None:
        self.parts.flush()

    def close(self) -> None:
        self.parts.close()
        dataset = self._save()
        if self.repo and dataset is not None:
            try:
                self._push(dataset, self.repo, self._token(), self.private, self.split)
                log.info("pushed %d rows to the Hub: %s (split %s)", len(dataset), self.repo, self.split)
            except Exception as exc:  # the local copy is saved: say how to retry, never lose the run
                log.error("push_to_hub %s failed (%s: %s); the dataset is saved at %s", self.repo, type(exc).__name__, str(exc)[:300], self.path)

    def _save(self):
        """Builds the dataset from every part (streamed through a memory-mapped Arrow file)."""
        import datasets
        import pyarrow as pa
        import pyarrow.parquet as pq

        from matrix_plugin_parquet._encoding import conform, unify

        parts = sorted(Path(self.parts.location).glob("part-*.parquet"))
        if not parts:
            return None
        schema = unify([pq.read_schema(p) for p in parts])
        meta = {k.decode(): json.loads(v) for k, v in schema.metadata.items() if k.decode() in (_JSON_COLUMNS, _DERIVED_COLUMNS)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        try:
            arrow = work / "records.arrow"
            with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, schema.remove_metadata()) as writer:
                for part in parts:
                    f = pq.ParquetFile(part)
                    for i in range(f.num_row_groups):
                        writer.write_table(conform(f.read_row_group(i), schema).replace_schema_metadata(None))
            dataset = datasets.Dataset.from_file(str(arrow), info=datasets.DatasetInfo(description=json.dumps(meta)))
            saved = work / "dataset"
            dataset.save_to_disk(str(saved))
            old = self.path.with_name(f".{self.path.name}.old-{uuid.uuid4().hex[:6]}")
            if self.path.exists():
                os.replace(self.path, old)
            os.replace(saved, self.path)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return datasets.load_from_disk(str(self.path))

    def _push(self, dataset, repo: str, token: str | None, private: bool, split: str) -> None:
        dataset.push_to_hub(repo, token=token, private=private, split=split)


@hookimpl
def register_sinks(register):
    register(SinkSpec("hfdatasets", HFDatasetsSink, "Hugging Face datasets: save_to_disk at the end (Parquet parts while running), optional push_to_hub"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("hfdatasets", Path(__file__).parent / "conf", "sink/hfdatasets"))
