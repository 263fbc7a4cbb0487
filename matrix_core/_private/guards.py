"""Checks a run makes before it starts or writes anything: a bad address or output path is
one line naming it, not a hang or a damaged file."""
from __future__ import annotations

import itertools
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import ConfigError, MatrixError

# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, a Ray
# client server) answers with its own SETTINGS frame; anything else does not.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 4
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def check_address(address: str, timeout_s: float) -> None:
    """Fails within ``timeout_s`` unless a gRPC server (a Ray cluster) answers at ``address``.

    ``ray.init`` itself retries a dead or foreign address for many minutes.
    """
    if address in ("local", "auto") or os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # TLS: the plain-text probe cannot tell; Ray's own errors apply
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"run.address={address!r}: expected HOST:PORT or ray://HOST:PORT of a Ray cluster")
    where = f"cannot start or join Ray at {address!r}: no Ray cluster answers"  # the wording of init_ray's own error
    bound = f"gave up after {timeout_s:g}s (run.connect_timeout_s)"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(_H2_PREFACE)
            header = _recv(sock, 9)
    except socket.timeout:
        raise MatrixError(f"{where}: no answer; {bound}") from None
    except OSError as exc:
        raise MatrixError(f"{where}: {exc.strerror or type(exc).__name__}") from None
    if len(header) < 9 or header[3] != _H2_SETTINGS:
        raise MatrixError(f"{where}: something else listens there (it does not speak gRPC)")


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def check_output(location: str, inputs: dict[str, str | None]) -> None:
    """Refuses an output path that would destroy data, before anything is written.

    ``inputs`` maps config keys (``dataset.path``) to the files the run reads.
    """
    if not location:
        return  # a sink that writes no file (a database, a queue): its own checks apply
    if not str(location).strip():
        raise ConfigError("output.path is empty: name the file the results go to (output.path=FILE)")
    path = Path(location).expanduser()
    for key, value in inputs.items():
        if value and _same(path, Path(value).expanduser()):
            raise ConfigError(f"output.path={location} is also {key}: the run would write into its own input; choose another output.path")
    if path.is_file():
        if path.stat().st_size and not Path(str(path) + ".meta.json").exists() and not _holds_records(path):
            raise ConfigError(
                f"output.path={location} is an existing file that no matrix run wrote (its first line is not a task record); "
                "move it aside or choose another output.path"
            )
        return
    if path.exists() and not path.is_dir() and str(path) != os.devnull:
        raise ConfigError(f"output.path={location} is not a regular file (a device, socket or pipe): results must land in a file")
    if path.exists():
        return  # a directory: directory sinks (parquet) write there, file sinks say so themselves
    folder = path.parent
    existing = next(p for p in [folder, *folder.parents] if p.exists() or p == p.parent)
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"output.path={location}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"output.path={location}: cannot write in {folder} ({exc.strerror or type(exc).__name__})") from None


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _holds_records(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(1 << 20)
    if path.name.endswith(".zst"):
        return head.startswith(_ZSTD_MAGIC)
    first = head.split(b"\n", 1)[0]
    try:
        record = json.loads(first)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and "task_id" in record


def sink_location(spec: Any, config: Mapping[str, Any]) -> str:
    """Where the sink will write. Building the sink here (its constructor only reads its
    options) turns a bad sink option into one line before Ray starts, not a dead actor."""
    try:
        return spec.cls(dict(config)).location
    except MatrixError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. int('abc') on an option
        raise ConfigError(f"sink {spec.name!r}: bad option ({type(exc).__name__}: {exc})") from None


def first_row_or_fail(rows: Iterator[Any], dataset: Any) -> Iterator[Any]:
    """``rows`` unchanged, unless there is none: a run with nothing to do is a mistake
    (wrong file, a limit of 0), and its exit code must say so to a script."""
    if dataset.limit == 0:
        raise ConfigError("dataset.limit=0 reads no rows: nothing to do")
    first = next(rows, None)
    if first is None:
        where = dataset.path or f"dataset.loader={dataset.loader}"
        raise ConfigError(f"the dataset has no rows ({where}): nothing to do")
    return itertools.chain([first], rows)
