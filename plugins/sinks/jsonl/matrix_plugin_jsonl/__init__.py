"""JSON Lines sink: one line per finished task, appended and flushed as it goes."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from matrix_core import ConfigDirSpec, ConfigError, Sink, SinkSpec, hookimpl

log = logging.getLogger("matrix.jsonl")


class JsonlSink(Sink):
    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        if not config.get("path"):
            raise ConfigError("sink.path is not set (output.path=FILE)")
        self.path = Path(str(config["path"])).expanduser()
        self.fsync = config.get("fsync", "batch") == "batch"
        if config.get("fsync", "batch") not in ("batch", "none"):
            raise ConfigError(f"sink.fsync must be 'batch' or 'none', got {config.get('fsync')!r}")
        self._file = None

    @property
    def location(self) -> str:
        return str(self.path)

    def existing_ids(self) -> dict[str, str]:
        """Ids already written; a torn last line (killed mid-write) is cut off before appending."""
        if not self.path.exists():
            return {}
        ids: dict[str, str] = {}
        good_until = 0
        with self.path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    record = json.loads(line)
                    ids[record["task_id"]] = record.get("status", "done")
                except (ValueError, KeyError, TypeError):
                    log.warning("%s: unreadable line at byte %d ignored", self.path, good_until)
                good_until += len(line)
        if good_until < self.path.stat().st_size:
            log.warning("%s: cutting a torn last line (%d bytes)", self.path, self.path.stat().st_size - good_until)
            with self.path.open("r+b") as f:
                f.truncate(good_until)
        return ids

    def remove(self, task_ids: set[str]) -> None:
        """Rewrites the file without these ids; atomic (a crash leaves the old or the new file)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with self.path.open("rb") as src, tmp.open("wb") as dst:
            for line in src:
                try:
                    if json.loads(line).get("task_id") in task_ids:
                        continue
                except ValueError:
                    continue
                dst.write(line)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.path)

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        data = b"".join(json.dumps(r, ensure_ascii=False, default=str).encode() + b"\n" for r in records)
        self._file.write(data)

    def flush(self) -> None:
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None


@hookimpl
def register_sinks(register):
    register(SinkSpec("jsonl", JsonlSink, "JSON Lines, one line per task"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("jsonl", Path(__file__).parent / "conf", "sink/jsonl"))
