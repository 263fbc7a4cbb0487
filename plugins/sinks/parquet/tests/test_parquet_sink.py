"""The parquet sink: round trip of nested records, resume after a crash, remove, compaction."""
import os
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest

from matrix_core import ConfigError, MatrixError
from matrix_plugin_parquet import ParquetSink, iter_parquet_records, read_parquet_records


def record(i, status="done", **state):
    return {
        "task_id": f"doc-{i}#0", "row_key": f"doc-{i}", "trial": 0, "status": status,
        "error": None if status == "done" else {"type": "LLMError", "message": "boom", "role": "scorer", "step": 1},
        "steps": 2, "current_role": None, "created_at": 1700000000.5 + i, "hops": [{"role": "filter", "host": 0, "queued_s": 0.0, "step_s": 0.01}],
        "payload": {"text": f"passage {i} é", "meta": {"n": i}} if i % 3 else f"plain payload {i}",
        "history": [{"role": "assistant", "content": "{\"score\": 4}", "usage": {"prompt_tokens": 10, "completion_tokens": 3}}] * (i % 2),
        "state": {"kept": i % 2 == 0, "scores": {"depth": i % 5}, "steps": ["a", "b"][: i % 3], **state},
    }


def run_sink(path, batches, **config):
    sink = ParquetSink({"path": str(path), **config})
    existing = sink.existing_ids()
    sink.open()
    for batch in batches:
        sink.write(batch)
        sink.flush()
    sink.close()
    return existing


def test_nested_records_round_trip_and_ids_read_back(tmp_path):
    out = tmp_path / "out.parquet"
    records = [record(i) for i in range(7)] + [record(7, "failed")]
    run_sink(out, [records[:3], records[3:5], records[5:]], compact=False)
    assert len(list(out.glob("part-*.parquet"))) == 3  # one file per flush
    assert read_parquet_records(out) == records
    assert ParquetSink({"path": str(out)}).existing_ids() == {r["task_id"]: r["status"] for r in records}


def test_jsonl_default_path_becomes_a_parquet_directory_and_bad_config_is_clear(tmp_path):
    assert ParquetSink({"path": str(tmp_path / "nr.jsonl")}).location == str(tmp_path / "nr.parquet")
    with pytest.raises(ConfigError, match="sink.path is not set"):
        ParquetSink({})
    with pytest.raises(ConfigError, match="sink.compression must be one of"):
        ParquetSink({"path": str(tmp_path / "x"), "compression": "lz77"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        ParquetSink({"path": str(tmp_path / "file")})


def test_compaction_writes_row_groups_and_keeps_every_record_once(tmp_path):
    out = tmp_path / "out.parquet"
    records = [record(i) for i in range(25)]
    run_sink(out, [records[i:i + 3] for i in range(0, 25, 3)], row_group_size=10)
    files = list(out.glob("part-*.parquet"))
    assert len(files) == 1
    meta = pq.read_metadata(files[0])
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [10, 10, 5]
    assert read_parquet_records(out) == records


def test_resume_appends_parts_and_new_columns_unify(tmp_path):
    out = tmp_path / "out.parquet"
    first = [dict(record(i), extra=None) for i in range(3)]  # all-null column: type undecided
    run_sink(out, [first])
    second = [dict(record(i), extra=float(i)) for i in range(3, 6)]
    existing = run_sink(out, [second])
    assert set(existing) == {r["task_id"] for r in first}
    assert read_parquet_records(out) == first + second


def test_type_clash_is_one_clear_error(tmp_path):
    sink = ParquetSink({"path": str(tmp_path / "o")})
    sink.open()
    sink.write([dict(record(0), extra=1)])
    sink.flush()
    sink.write([dict(record(1), extra="one")])
    with pytest.raises(MatrixError, match="parquet column 'extra' holds int64 values"):
        sink.flush()


def test_remove_for_retry_failed(tmp_path):
    out = tmp_path / "out.parquet"
    records = [record(0), record(1, "failed"), record(2), record(3, "failed")]
    run_sink(out, [records[:2], records[2:3], records[3:]], compact=False)
    ParquetSink({"path": str(out)}).remove({"doc-1#0", "doc-3#0"})
    assert read_parquet_records(out) == [records[0], records[2]]
    assert len(list(out.glob("part-*.parquet"))) == 2  # the part left empty is deleted
    assert not list(out.glob(".*"))


def test_derived_columns_are_extra_and_dropped_on_read(tmp_path):
    out = tmp_path / "out.parquet"
    records = [record(i, question=f"why {i}?") for i in range(4)]
    run_sink(out, [records], columns={"question": "state.question", "depth": "state.scores.depth"})
    table = pq.read_table(next(out.glob("part-*.parquet")))
    assert table.column("question").to_pylist() == [f"why {i}?" for i in range(4)]
    assert str(table.schema.field("depth").type) == "int64"
    assert read_parquet_records(out) == records
    assert read_parquet_records(out, include_derived=True)[1]["question"] == "why 1?"


CRASHING_WRITER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from test_parquet_sink import record
    from matrix_plugin_parquet import ParquetSink
    import pyarrow.parquet as pq
    sink = ParquetSink({{"path": {out!r}}})
    sink.existing_ids(); sink.open()
    for b in range(3):
        sink.write([record(b * 10 + i) for i in range(10)]); sink.flush()
    real = pq.write_table
    def torn(table, where, **kw):  # dies half-way through writing the next part
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        os._exit(9)
    pq.write_table = torn
    sink.write([record(99)]); sink.flush()
""")


def test_a_process_killed_mid_write_loses_nothing_already_flushed(tmp_path):
    out = tmp_path / "out.parquet"
    script = CRASHING_WRITER.format(tests=os.path.dirname(__file__), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert list(out.glob(".*.tmp"))  # the torn temporary is there ...
    sink = ParquetSink({"path": str(out)})
    assert sorted(sink.existing_ids()) == sorted(f"doc-{i}#0" for i in range(30))
    assert not list(out.glob(".*.tmp"))  # ... and removed on open
    sink.open()
    sink.write([record(99)])
    sink.close()
    assert [r["task_id"] for r in iter_parquet_records(out)] == [f"doc-{i}#0" for i in [*range(30), 99]]


def test_a_crash_during_compaction_does_not_duplicate(tmp_path):
    out = tmp_path / "out.parquet"
    records = [record(i) for i in range(9)]
    run_sink(out, [records[i:i + 3] for i in range(0, 9, 3)], compact=False)
    parts = sorted(out.glob("part-*.parquet"))
    sink = ParquetSink({"path": str(out)})
    sink.open()
    real_unlink = type(parts[0]).unlink
    type(parts[0]).unlink = lambda self, *a, **k: None  # the merged file is in place, deleting the parts "crashed"
    try:
        sink.close()
    finally:
        type(parts[0]).unlink = real_unlink
    assert len(list(out.glob("part-*.parquet"))) == 4
    assert sorted(ParquetSink({"path": str(out)}).existing_ids()) == sorted(r["task_id"] for r in records)
    assert len(list(out.glob("part-*.parquet"))) == 1
    assert read_parquet_records(out) == records
