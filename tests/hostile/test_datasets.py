"""Bad dataset rows, for every built-in loader: a bad row is a failed task with its reason,
the good rows around it are written, and a rerun neither dies at that row nor redoes it.
Files that cannot be read at all are one line before anything starts."""
from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import by_id, cli, one_error

DEEP = "[" * 200_000 + "]" * 200_000


def _jsonl(tmp_path, *lines: bytes | str) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"".join((l.encode() if isinstance(l, str) else l) + b"\n" for l in lines))
    return path


def _csv(tmp_path, data: bytes) -> Path:
    path = tmp_path / "rows.csv"
    path.write_bytes(data)
    return path


# (id, loader, file bytes builder, {row key: expected error text or None for a good row})
ROWS = [
    ("jsonl-nested-200k", "jsonl", lambda t: _jsonl(t, '{"id": 1}', '{"id": 2, "q": ' + DEEP + "}", '{"id": 3}'),
     {"1": None, "2": "JSON nested too deep to read", "3": None}),
    ("jsonl-malformed-line", "jsonl", lambda t: _jsonl(t, '{"id": 1}', '{"id": 2', '{"id": 3}'),
     {"1": None, "2": "invalid JSON (Expecting ',' delimiter", "3": None}),
    ("jsonl-not-utf8", "jsonl", lambda t: _jsonl(t, '{"id": 1}', b'{"id": 2, "q": "caf\xe9"}', '{"id": 3}'),
     {"1": None, "2": "invalid JSON ('utf-8' codec can't decode byte 0xe9", "3": None}),
    ("jsonl-array-row", "jsonl", lambda t: _jsonl(t, '{"id": 1}', "[1, 2]", '{"id": 3}'),
     {"1": None, "2": "expected a JSON object, got list", "3": None}),
    ("jsonl-string-row", "jsonl", lambda t: _jsonl(t, '"text"', '{"id": 2}'), {"1": "expected a JSON object, got str", "2": None}),
    ("jsonl-truncated-last-line", "jsonl", lambda t: _jsonl(t, '{"id": 1}', '{"id": 2, "q": "cut'),
     {"1": None, "2": "invalid JSON (Invalid control character"}),
    ("jsonl-nul-bytes", "jsonl", lambda t: _jsonl(t, '{"id": 1}', b"\x00\x00\x00", '{"id": 3}'),
     {"1": None, "2": "invalid JSON (Expecting value", "3": None}),
    ("jsonl-lone-surrogate", "jsonl", lambda t: _jsonl(t, '{"id": 1}', '{"id": 2, "q": "\\ud800"}', '{"id": 3}'),
     {"1": None, "2": "UnicodeEncodeError", "3": None}),  # readable, but no sink can encode it: failed at the sink
    ("csv-field-over-128KiB", "csv", lambda t: _csv(t, b"id,q\na,1\nb," + b"x" * 140_000 + b"\nc,3\n"),
     {"a": None, "b": None, "c": None}),  # a big cell is data, not an error
    # A row that cannot be read has no id: its key is its row number (the header is row 1).
    ("csv-not-utf8", "csv", lambda t: _csv(t, b"id,q\na,1\nb,caf\xe9\nc,3\n"), {"a": None, "3": "not UTF-8 text", "c": None}),
    ("csv-short-row", "csv", lambda t: _csv(t, b"id,q\na,1\nb\nc,3\n"), {"a": None, "3": "expected 2 columns, got 1", "c": None}),
    ("csv-long-row", "csv", lambda t: _csv(t, b"id,q\na,1\nb,2,extra\nc,3\n"), {"a": None, "3": "expected 2 columns, got 3", "c": None}),
    ("csv-nul-byte", "csv", lambda t: _csv(t, b"id,q\na,1\nb,x\x00y\nc,3\n"), {"a": None, "b": None, "c": None}),
    ("csv-unclosed-quote", "csv", lambda t: _csv(t, b'id,q\na,1\nb,"never closed\n'), {"a": None, "b": None}),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("loader, build, expected", [pytest.param(l, b, e, id=i) for i, l, b, e in ROWS])
def test_bad_row_is_a_failed_task_and_the_run_goes_on(data_run, tmp_path, loader, build, expected):
    dataset = build(tmp_path)
    result, out = data_run(dataset, loader)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr and "matrix: error:" not in result.stderr
    written = by_id(out)
    want = {f"{key}#0": error for key, error in expected.items()}
    assert sorted(written) == sorted(want), (sorted(written), sorted(want))
    for task_id, error in want.items():
        record = written[task_id]
        if error is None:
            assert record["status"] == "done", record.get("error")
            assert [v[0] for v in record["state"]["visits"]] == ["a", "b", "c"]
        else:
            assert record["status"] == "failed" and error in record["error"]["message"], record["error"]
    before = out.read_bytes()
    again, _ = data_run(dataset, loader)  # a rerun: nothing redone, nothing lost, no death at the bad row
    assert again.exit_code == 0, again.stderr
    assert out.read_bytes() == before
    failed = sum(e is not None for e in want.values())
    if failed:
        assert f"{failed} task(s) in the output failed in an earlier run and were not retried (resume.retry_failed=true" in again.stdout


def test_csv_not_utf8_row_fails_alone(data_run, tmp_path):
    # Row 3 of the file (id 2) holds a Latin-1 byte: it fails with its row number as key.
    dataset = _csv(tmp_path, b"q\nfine\ncaf\xe9\nalso fine\n")  # no id column: rows are keyed by number
    result, out = data_run(dataset, "csv")
    assert result.exit_code == 0, result.stderr
    assert "row 3: not UTF-8 text" in result.stderr  # logged with its row, once
    written = by_id(out)
    assert sorted(written) == ["2#0", "3#0", "4#0"]
    assert written["3#0"]["status"] == "failed" and written["3#0"]["state"]["dataset_row"] == f"{dataset} row 3"
    assert written["2#0"]["status"] == written["4#0"]["status"] == "done"


UNREADABLE = [
    ("jsonl-missing-file", "jsonl", None, "dataset file not found: "),
    ("csv-missing-file", "csv", None, "dataset file not found: "),
    ("jsonl-empty-file", "jsonl", b"", "the dataset has no rows ("),
    ("jsonl-blank-lines-only", "jsonl", b"\n \n\t\n", "the dataset has no rows ("),
    ("csv-empty-file", "csv", b"", "the dataset has no rows ("),
    ("csv-header-only", "csv", b"id,q\n", "the dataset has no rows ("),
    ("csv-header-not-utf8", "csv", b"id,caf\xe9\n1,2\n", "the CSV header is not UTF-8 text"),
    ("jsonl-path-is-a-folder", "jsonl", "dir", "dataset file not found: "),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("loader, data, expected", [pytest.param(l, d, e, id=i) for i, l, d, e in UNREADABLE])
def test_unreadable_dataset_is_one_line_before_anything_starts(tmp_path, loader, data, expected):
    path = tmp_path / f"rows.{loader}"
    if data == "dir":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    out = tmp_path / "out.jsonl"
    one_error(cli("run", "relay", "run.progress=off", f"dataset.loader={loader}", f"dataset.path={path}", f"output.path={out}"), expected)
    assert not out.exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("overrides, expected", [
    pytest.param(["dataset.size=0"], "the dataset has no rows (dataset.loader=range): nothing to do", id="range-size-0"),
    pytest.param(["dataset.size=-3"], "dataset.size=-3: expected an integer >= 0 or null", id="range-size-negative"),
    pytest.param(["dataset.size=null"], "dataset.size must be set to a count >= 0", id="range-size-null"),
    pytest.param(["dataset.limit=0"], "dataset.limit=0 reads no rows: nothing to do", id="limit-0"),
    pytest.param(["dataset.loader=jsonl", "dataset.path=null"], "dataset.path is not set", id="jsonl-no-path"),
    pytest.param(["dataset.loader=csv", "dataset.path="], "dataset.path is not set", id="csv-empty-path"),
    pytest.param(["run.trials=0"], "run.trials=0: expected an integer >= 1", id="trials-0"),
])
def test_nothing_to_do_is_an_error(tmp_path, overrides, expected):
    out = tmp_path / "out.jsonl"
    one_error(cli("run", "relay", "run.progress=off", f"output.path={out}", *overrides), expected)
    assert not out.exists()


@pytest.mark.timeout(300)
def test_duplicate_ids_are_skipped_and_said(data_run, tmp_path):
    dataset = _jsonl(tmp_path, '{"id": 1}', '{"id": 1}', '{"id": 2}')
    result, out = data_run(dataset, "jsonl")
    assert result.exit_code == 0 and "1 duplicate rows skipped" in result.stdout, result.stdout
    assert sorted(by_id(out)) == ["1#0", "2#0"]
