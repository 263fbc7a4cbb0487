import json

import pytest

from matrix_core import ConfigError
from matrix_plugin_jsonl import JsonlSink


def test_writes_one_line_per_record_and_reads_ids_back(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    sink = JsonlSink({"path": str(path)})
    assert sink.existing_ids() == {}
    sink.open()
    sink.write([{"task_id": "a#0", "status": "done", "text": "é"}, {"task_id": "b#0", "status": "failed"}])
    sink.flush()
    sink.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(l)["task_id"] for l in lines] == ["a#0", "b#0"] and "é" in lines[0]
    assert JsonlSink({"path": str(path)}).existing_ids() == {"a#0": "done", "b#0": "failed"}


def test_a_torn_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"task_id": "a#0", "status": "done"}\n{"task_id": "b#0", "sta')
    sink = JsonlSink({"path": str(path)})
    assert sink.existing_ids() == {"a#0": "done"}
    sink.open()
    sink.write([{"task_id": "b#0", "status": "done"}])
    sink.close()
    assert [json.loads(l)["task_id"] for l in path.read_text().splitlines()] == ["a#0", "b#0"]


def test_bad_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="sink.path is not set"):
        JsonlSink({})
    with pytest.raises(ConfigError, match="sink.fsync must be"):
        JsonlSink({"path": str(tmp_path / "x"), "fsync": "sometimes"})
