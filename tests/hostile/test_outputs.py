"""Outputs at risk: a path that would destroy data is refused before anything is written,
and the file there is left byte for byte as it was."""
from __future__ import annotations


import pytest

from .conftest import RUN, by_id, cli, one_error

FOREIGN = b"precious line 1\nprecious line 2 without newline"


def _run(*overrides):
    return cli("run", "relay", "run.progress=off", "dataset.size=3", *overrides)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name, content", [
    pytest.param("notes.jsonl", FOREIGN, id="foreign-text-file"),
    pytest.param("data.jsonl", b'{"id": 1, "q": "a user record"}\n', id="foreign-jsonl-without-task-ids"),
    pytest.param("data.jsonl", b"[1, 2, 3]\n", id="foreign-json-array"),
    pytest.param("out.jsonl.zst", b"not zstd at all\n", id="foreign-file-named-zst"),
    pytest.param("image.jsonl", bytes(range(256)) * 4, id="foreign-binary-file"),
])
def test_existing_file_not_written_by_matrix_is_refused_and_kept(tmp_path, name, content):
    target = tmp_path / name
    target.write_bytes(content)
    one_error(_run(f"output.path={target}"), f"output.path={target} is an existing file that no matrix run wrote")
    assert target.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no sidecar, no lock


@pytest.mark.timeout(120)
@pytest.mark.parametrize("loader", ["jsonl", "csv"])
def test_output_that_is_the_input_is_refused(tmp_path, loader):
    data = tmp_path / f"rows.{loader}"
    content = b'{"id": 1}\n{"id": 2}\n' if loader == "jsonl" else b"id,q\n1,a\n"
    data.write_bytes(content)
    one_error(_run(f"dataset.loader={loader}", f"dataset.path={data}", f"output.path={data}"), "is also dataset.path")
    assert data.read_bytes() == content


@pytest.mark.timeout(120)
def test_output_that_is_the_input_through_a_link_is_refused(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_bytes(b'{"id": 1}\n')
    (tmp_path / "link.jsonl").symlink_to(data)
    one_error(_run("dataset.loader=jsonl", f"dataset.path={data}", f"output.path={tmp_path / 'link.jsonl'}"), "is also dataset.path")
    assert data.read_bytes() == b'{"id": 1}\n'


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path, expected", [
    pytest.param("", "sink.path is not set (output.path=FILE)", id="empty"),
    pytest.param("' '", "output.path is empty", id="blank"),
    pytest.param("/proc/nope/out.jsonl", "output.path=/proc/nope/out.jsonl: cannot write in /proc/nope", id="unwritable-folder"),
    pytest.param("{file}/out.jsonl", "is a file, not a folder", id="parent-is-a-file"),
    pytest.param("{dir}", "is a folder; the jsonl sink writes a file", id="path-is-a-folder"),
    pytest.param("/dev/full", "output.path=/dev/full is not a regular file", id="device-that-is-always-full"),
    pytest.param("/dev/zero", "output.path=/dev/zero is not a regular file", id="device-that-never-ends"),
])
def test_bad_output_path_is_one_line(tmp_path, path, expected):
    (tmp_path / "file").write_bytes(b"x")
    path = path.format(file=tmp_path / "file", dir=tmp_path)
    one_error(_run(f"output.path={path}"), expected)
    assert (tmp_path / "file").read_bytes() == b"x"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("override, expected", [
    pytest.param("sink.fsync=bogus", "sink.fsync must be 'batch' or 'none', got 'bogus'", id="fsync-bogus"),
    pytest.param("sink.zstd_level=abc", "sink 'jsonl': bad option (ValueError: invalid literal for int()", id="zstd-level-text"),
    pytest.param("sink=nope", "Could not find 'sink/nope'", id="unknown-sink-group"),
    pytest.param("sink.path=", "sink.path is not set", id="sink-path-empty"),
    pytest.param("sink.name=nope", "unknown sink 'nope'; installed: ", id="unknown-sink-name"),
])
def test_bad_sink_option_is_one_line_before_ray(tmp_path, override, expected):
    one_error(_run(f"output.path={tmp_path / 'out.jsonl'}", override), expected)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.timeout(300)
def test_output_of_another_workflow_is_refused_byte_for_byte(matrix_ray, tmp_path):
    out = tmp_path / "out.jsonl"
    first = cli("run", "relay", *RUN, "dataset.size=2", f"output.path={out}")
    assert first.exit_code == 0, first.stderr
    before = out.read_bytes()
    one_error(cli("run", "relay", *RUN, "dataset.size=2", "run.trials=2", f"output.path={out}"), "was written by a different run (trials: 1 there, 2 now)")
    assert out.read_bytes() == before and sorted(by_id(out)) == ["0#0", "1#0"]
