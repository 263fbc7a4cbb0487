"""`.jsonl.zst`: one zstd frame per flush, resumable appends, a torn last frame cut."""
import json
import os

import pytest
import zstandard

from matrix_core import MatrixError
from matrix_plugin_jsonl import JsonlSink, read_jsonl


def write_batches(path, batches):
    sink = JsonlSink({"path": str(path)})
    sink.existing_ids()
    sink.open()
    for batch in batches:
        sink.write(batch)
        sink.flush()
    sink.close()


def rec(i, status="done"):
    return {"task_id": f"t{i}#0", "status": status, "history": [{"role": "user", "content": f"é {i}"}]}


def test_each_flush_is_one_frame_and_appends_resume(tmp_path):
    path = tmp_path / "out.jsonl.zst"
    write_batches(path, [[rec(0), rec(1)], [rec(2)]])
    first_size = path.stat().st_size
    write_batches(path, [[rec(3, "failed")]])  # a second run appends a frame
    assert path.stat().st_size > first_size
    # The standard decoder reads concatenated frames as one stream.
    with path.open("rb") as f:
        plain = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    assert [json.loads(l)["task_id"] for l in plain.splitlines()] == ["t0#0", "t1#0", "t2#0", "t3#0"]
    assert read_jsonl(path) == [rec(0), rec(1), rec(2), rec(3, "failed")]
    assert JsonlSink({"path": str(path)}).existing_ids() == {"t0#0": "done", "t1#0": "done", "t2#0": "done", "t3#0": "failed"}


def test_a_torn_last_frame_is_cut_before_appending(tmp_path):
    path = tmp_path / "out.jsonl.zst"
    write_batches(path, [[rec(0)], [rec(1), rec(2)]])
    whole = path.read_bytes()
    one_frame = len(zstandard.ZstdCompressor(level=3).compress(json.dumps(rec(0), ensure_ascii=False).encode() + b"\n"))
    path.write_bytes(whole[:-5])  # killed while writing the second frame
    sink = JsonlSink({"path": str(path)})
    assert sink.existing_ids() == {"t0#0": "done"}
    assert path.stat().st_size == one_frame
    sink.open()
    sink.write([rec(1)])
    sink.close()
    assert [r["task_id"] for r in read_jsonl(path)] == ["t0#0", "t1#0"]


def test_remove_rewrites_without_the_ids(tmp_path):
    path = tmp_path / "out.jsonl.zst"
    write_batches(path, [[rec(0), rec(1, "failed")], [rec(2, "failed")]])
    JsonlSink({"path": str(path)}).remove({"t1#0", "t2#0"})
    assert read_jsonl(path) == [rec(0)]
    assert not os.path.exists(str(path) + ".tmp")


def test_a_damaged_frame_in_the_middle_is_a_clear_error(tmp_path):
    path = tmp_path / "out.jsonl.zst"
    write_batches(path, [[rec(0)], [rec(1)]])
    data = bytearray(path.read_bytes())
    data[:4] = b"junk"  # not a zstd magic number
    path.write_bytes(bytes(data))
    with pytest.raises(MatrixError, match="corrupt zstd frame at byte 0"):
        JsonlSink({"path": str(path)}).existing_ids()
