"""Dataset loaders: jsonl, csv and a synthetic range."""

from __future__ import annotations

from .._private import datasets
from ..hookspecs import hookimpl
from ..specs import DatasetLoaderSpec


@hookimpl
def register_dataset_loaders(register):
    register(DatasetLoaderSpec("jsonl", datasets.load_jsonl, "one JSON object per line (dataset.path)"))
    register(DatasetLoaderSpec("csv", datasets.load_csv, "CSV with a header row (dataset.path)"))
    register(DatasetLoaderSpec("range", datasets.load_range, "dataset.size synthetic rows {id, n}"))
