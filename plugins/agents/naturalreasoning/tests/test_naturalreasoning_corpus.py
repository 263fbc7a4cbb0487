"""The corpus loader: shard formats, interleaved partitions, stable ids, bad rows, bounded memory."""
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from matrix_core import ConfigError
from matrix_plugin_naturalreasoning import Corpus, load_corpus


def docs(shard, n, size=40):
    return [{"text": f"shard {shard} doc {i} " + "word " * size, "doc_id": f"orig-{shard}-{i}"} for i in range(n)]


def write_jsonl(path, rows, zst=False):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if zst else data)


def test_shards_of_each_format_interleave_with_shard_line_ids(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", docs("a", 3))
    write_jsonl(tmp_path / "b.jsonl.zst", docs("b", 2), zst=True)
    pq.write_table(pa.Table.from_pylist(docs("c", 4)), tmp_path / "c.parquet")
    (tmp_path / "notes.txt").write_text("not a shard")
    rows = list(load_corpus({"path": str(tmp_path), "partitions": 2, "batch_rows": 2}))
    ids = [r["doc_id"] for _, r in rows]
    # Two shards at a time, round robin; the third starts when one is done.
    assert ids == ["a:1", "b:1", "a:2", "b:2", "a:3", "c:1", "c:2", "c:3", "c:4"]
    assert rows[0][1]["source_doc_id"] == "orig-a-0" and rows[5][1]["text"].startswith("shard c doc 0")
    assert len({n for n, _ in rows}) == 9  # row numbers unique across shards


def test_bad_rows_are_reported_with_shard_and_line(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"text": "fine"}\n{broken\n[1]\n{"title": "no text"}\n\n{"text": "also fine"}\n')
    rows = list(load_corpus({"path": str(tmp_path)}))
    errors = [str(r) for _, r in rows if isinstance(r, Exception)]
    assert [r["doc_id"] for _, r in rows if isinstance(r, dict)] == ["s:1", "s:6"]
    assert errors[0].startswith(f"{tmp_path / 's.jsonl'} line 2: invalid JSON")
    assert errors[1].endswith("line 3: expected a JSON object, got list") and errors[2].endswith("line 4: no 'text' text")


def test_missing_or_empty_corpus_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="corpus not found"):
        load_corpus({"path": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="no corpus shards"):
        load_corpus({"path": str(tmp_path)})
    with pytest.raises(ConfigError, match="dataset.path is not set"):
        load_corpus({})


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_corpus_far_larger_than_the_memory_budget_streams(tmp_path, fmt):
    shards, per_shard = 12, 2500  # ~30 MB of text; the loader may hold ~a few rows per open shard
    for s in range(shards):
        rows = docs(s, per_shard, size=200)
        if fmt == "jsonl":
            write_jsonl(tmp_path / f"shard-{s:02d}.jsonl", rows)
        else:
            pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"shard-{s:02d}.parquet", row_group_size=500)
    corpus = Corpus({"path": str(tmp_path), "partitions": 3, "batch_rows": 64})
    tracemalloc.start()
    count, text_bytes, seen_shards = 0, 0, set()
    for _, row in corpus:
        count += 1
        text_bytes += len(row["text"])
        seen_shards.add(row["doc_id"].split(":")[0])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == shards * per_shard and len(seen_shards) == shards
    assert corpus.max_buffered_rows <= 3 * (64 if fmt == "parquet" else 1)
    budget = 2 << 20
    assert text_bytes > 10 * budget and peak < budget, (text_bytes, peak)
