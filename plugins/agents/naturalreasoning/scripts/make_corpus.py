"""Builds a web-text-like corpus from text already on this machine: docstrings and docs of
the installed Python packages. No download.

    python scripts/make_corpus.py --out DIR --docs 400 --shards 4 [--format jsonl|jsonl.zst|parquet]

Each document is one module, class or function docstring, or one section of a README /
.md / .rst file shipped with a package; ``source`` says where it came from. Sources are
visited in a fixed order and sampled with a fixed seed, so the same machine gives the
same corpus. The packaged default corpus (``matrix_plugin_naturalreasoning/data/corpus``)
was made with the defaults.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import json
import random
import re
import textwrap
from pathlib import Path


def _docstrings(path: Path, dist: str):
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                name = getattr(node, "name", "<module>")
                yield {"text": doc, "source": f"{dist}:{path.name}:{name}", "kind": "docstring"}


def _doc_sections(path: Path, dist: str):
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return
    # Split at headings: a section reads like one web page passage.
    for i, section in enumerate(re.split(r"\n(?=#{1,3} |\S[^\n]*\n[=\-~]{3,}\n)", text)):
        yield {"text": section.strip(), "source": f"{dist}:{path.name}#{i}", "kind": "doc"}


def candidates(min_chars: int, max_chars: int, packages: int = 0):
    seen: set[str] = set()
    dists = sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower())
    for dist in dists[:packages] if packages else dists:
        name = dist.metadata["Name"] or "?"
        for file in sorted(dist.files or [], key=str):
            path = Path(dist.locate_file(file))
            if path.suffix == ".py":
                docs = _docstrings(path, name)
            elif path.suffix in (".md", ".rst", ".txt") and "license" not in path.name.lower():
                docs = _doc_sections(path, name)
            else:
                continue
            for doc in docs:
                text = textwrap.dedent(doc["text"]).strip()
                digest = hashlib.sha1(text.encode()).hexdigest()
                if min_chars <= len(text) <= max_chars and digest not in seen:
                    seen.add(digest)
                    yield {**doc, "text": text, "package": name}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--docs", type=int, default=400, help="documents in all (0: every candidate)")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--format", choices=["jsonl", "jsonl.zst", "parquet"], default="jsonl")
    ap.add_argument("--min-chars", type=int, default=80)
    ap.add_argument("--max-chars", type=int, default=2500)
    ap.add_argument("--per-package", type=int, default=12, help="at most this many documents from one package")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--packages", type=int, default=0, help="read only the first N installed distributions (0: all; scanning all takes minutes)")
    args = ap.parse_args()

    by_package: dict[str, list[dict]] = {}
    for doc in candidates(args.min_chars, args.max_chars, args.packages):
        by_package.setdefault(doc["package"], []).append(doc)
    rng = random.Random(args.seed)
    docs = []
    for package in sorted(by_package):
        pool = by_package[package]
        docs.extend(rng.sample(pool, min(len(pool), args.per_package)) if args.docs else pool)
    rng.shuffle(docs)
    if args.docs:
        docs = docs[: args.docs]
    args.out.mkdir(parents=True, exist_ok=True)
    shards = [docs[i :: args.shards] for i in range(args.shards)]
    for i, shard in enumerate(shards):
        path = args.out / f"shard-{i:04d}.{args.format}"
        if args.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(shard), path)
            continue
        data = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in shard).encode()
        if args.format == "jsonl.zst":
            import zstandard

            data = zstandard.ZstdCompressor(level=10).compress(data)
        path.write_bytes(data)
    print(f"{len(docs)} documents from {len(by_package)} packages in {len(shards)} shards under {args.out}")


if __name__ == "__main__":
    main()
