"""JSON Lines sink: one line per finished task, appended and flushed as it goes.

A path ending in ``.zst`` is written compressed with zstd, one frame per flushed batch:
frames concatenate, so appending on resume is writing more frames, and a frame torn by a
crash is cut like a torn last line.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from matrix_core import ConfigDirSpec, ConfigError, MatrixError, Sink, SinkSpec, hookimpl

__all__ = ["JsonlSink", "read_jsonl"]

log = logging.getLogger("matrix.jsonl")

_CHUNK = 1 << 20


def _compressed(path: Path) -> bool:
    return path.name.endswith(".zst")


def _zstd_frames(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """Yields ``(end_offset, content)`` per complete frame; a torn last frame as ``(start, None)``.

    Streams the file (bounded memory); a corrupt frame is an error, since only the last one
    can be torn by a crash and anything else means the file was damaged some other way.
    """
    import zstandard

    with path.open("rb") as f:
        start = 0  # offset where the current frame begins
        pending = b""  # bytes of the current frame not yet consumed by the decompressor
        while True:
            dobj = zstandard.ZstdDecompressor().decompressobj()
            out = []
            consumed = start
            data = pending
            while True:
                if not data:
                    data = f.read(_CHUNK)
                    if not data:
                        if consumed > start or out:
                            yield start, None
                        return
                try:
                    out.append(dobj.decompress(data))
                except zstandard.ZstdError as exc:
                    raise MatrixError(f"{path}: corrupt zstd frame at byte {start} ({exc}); move the file aside to start over") from None
                if dobj.eof:
                    pending = dobj.unused_data
                    consumed += len(data) - len(pending)
                    break
                consumed += len(data)
                data = b""
            start = consumed
            yield start, b"".join(out)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a ``.jsonl`` or ``.jsonl.zst`` output (complete lines only)."""
    path = Path(path)
    if not _compressed(path):
        return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    records = []
    for _, content in _zstd_frames(path):
        if content is not None:
            records.extend(json.loads(line) for line in content.splitlines() if line.strip())
    return records


class JsonlSink(Sink):
    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        if not config.get("path"):
            raise ConfigError("sink.path is not set (output.path=FILE)")
        self.path = Path(str(config["path"])).expanduser()
        if self.path.is_dir():
            raise ConfigError(f"sink.path {self.path} is a folder; the jsonl sink writes a file (output.path=FILE.jsonl)")
        self.fsync = config.get("fsync", "batch") == "batch"
        if config.get("fsync", "batch") not in ("batch", "none"):
            raise ConfigError(f"sink.fsync must be 'batch' or 'none', got {config.get('fsync')!r}")
        self.compressed = _compressed(self.path)
        self.level = int(config.get("zstd_level", 3))
        if self.compressed:
            try:
                import zstandard  # noqa: F401
            except ImportError:
                raise ConfigError(f"{self.path}: writing .zst needs the zstandard package (pip install zstandard)") from None
        self._file = None
        self._buffer: list[bytes] = []

    @property
    def location(self) -> str:
        return str(self.path)

    def existing_ids(self) -> dict[str, str]:
        """Ids already written; a torn last line or frame (killed mid-write) is cut off before appending."""
        if not self.path.exists():
            return {}
        ids: dict[str, str] = {}
        good_until = 0
        if self.compressed:
            for end, content in _zstd_frames(self.path):
                if content is None:
                    break
                self._collect(content.splitlines(keepends=True), ids, good_until)
                good_until = end
        else:
            with self.path.open("rb") as f:
                good_until = self._collect(f, ids, 0)
        size = self.path.stat().st_size
        if good_until < size:
            log.warning("%s: cutting a torn last %s (%d bytes)", self.path, "frame" if self.compressed else "line", size - good_until)
            with self.path.open("r+b") as f:
                f.truncate(good_until)
        return ids

    def _collect(self, lines: Iterable[bytes], ids: dict[str, str], offset: int) -> int:
        """Adds the ids of complete lines; returns the offset after the last complete line."""
        for line in lines:
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
                ids[record["task_id"]] = record.get("status", "done")
            except (ValueError, KeyError, TypeError):
                log.warning("%s: unreadable line at byte %d ignored", self.path, offset)
            offset += len(line)
        return offset

    def remove(self, task_ids: set[str]) -> None:
        """Rewrites the file without these ids; atomic (a crash leaves the old or the new file)."""
        tmp = self.path.with_name(self.path.name + ".tmp")

        def keep(lines: Iterable[bytes]) -> Iterator[bytes]:
            for line in lines:
                try:
                    if json.loads(line).get("task_id") in task_ids:
                        continue
                except ValueError:
                    continue
                yield line

        with tmp.open("wb") as dst:
            if self.compressed:
                import zstandard

                compressor = zstandard.ZstdCompressor(level=self.level)
                for _, content in _zstd_frames(self.path):
                    if content is not None:
                        kept = b"".join(keep(content.splitlines(keepends=True)))
                        if kept:
                            dst.write(compressor.compress(kept))
            else:
                with self.path.open("rb") as src:
                    dst.writelines(keep(src))
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.path)

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        if self.compressed:
            import zstandard

            self._compressor = zstandard.ZstdCompressor(level=self.level)

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        data = [json.dumps(r, ensure_ascii=False, default=str).encode() + b"\n" for r in records]
        if self.compressed:
            self._buffer.extend(data)  # framed at flush: one frame per batch
        else:
            self._file.write(b"".join(data))

    def flush(self) -> None:
        if self.compressed and self._buffer:
            self._file.write(self._compressor.compress(b"".join(self._buffer)))
            self._buffer = []
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
    register(SinkSpec("jsonl", JsonlSink, "JSON Lines, one line per task (.jsonl.zst: zstd, one frame per batch)"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("jsonl", Path(__file__).parent / "conf", "sink/jsonl"))
