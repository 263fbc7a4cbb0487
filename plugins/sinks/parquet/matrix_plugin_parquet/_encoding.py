"""Records (nested dicts) <-> Arrow tables with a schema that stays stable across batches.

Nested values (history turns, state, payload) are free-form, so letting Arrow infer a
struct type per batch would give every part file a different schema. They are stored as
JSON text instead, and the file's metadata names those columns so readers decode them.
Top-level scalars keep their types.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from matrix_core import MatrixError

JSON_COLUMNS_KEY = b"matrix.json_columns"
DERIVED_COLUMNS_KEY = b"matrix.derived_columns"

# The orchestrator's own fields: fixed types, whatever the first batch happens to hold.
RECORD_TYPES: dict[str, pa.DataType | None] = {
    "task_id": pa.string(),
    "row_key": pa.string(),
    "trial": pa.int64(),
    "status": pa.string(),
    "steps": pa.int64(),
    "current_role": pa.string(),
    "created_at": pa.float64(),
    "error": None,  # None: JSON
    "payload": None,
    "state": None,
    "history": None,
    "hops": None,
}

_MISSING = object()


def lookup(record: Mapping[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _infer(values: Iterable[Any]) -> pa.DataType | None:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.null()  # undecided: a later batch with values fixes the type
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    if kinds == {str}:
        return pa.string()
    return None  # nested or mixed: JSON


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


class Encoder:
    """Turns batches of records into tables; the first batch fixes each column's type."""

    def __init__(self, derived: Mapping[str, str] | None = None, schema: pa.Schema | None = None):
        self.derived = dict(derived or {})
        self.types: dict[str, pa.DataType | None] = {}
        if schema is not None:
            json_cols = set(json.loads((schema.metadata or {}).get(JSON_COLUMNS_KEY, b"[]")))
            for f in schema:
                if f.name in json_cols or f.type != pa.null():
                    self.types[f.name] = None if f.name in json_cols else f.type

    def table(self, records: Sequence[Mapping[str, Any]]) -> pa.Table:
        columns: dict[str, list[Any]] = {}
        for i, record in enumerate(records):
            row = dict(record)
            for name, dotted in self.derived.items():
                row[name] = lookup(record, dotted)
            for key, value in row.items():
                columns.setdefault(key, [None] * i).append(value)
            for key, values in columns.items():
                if len(values) < i + 1:
                    values.append(None)
        arrays, fields = [], []
        for name, values in columns.items():
            if name not in self.types:
                kind = RECORD_TYPES[name] if name in RECORD_TYPES else _infer(values)
                if kind != pa.null():
                    self.types[name] = kind
            kind = self.types.get(name, pa.null())
            if kind is None:
                arrays.append(pa.array([_json(v) for v in values], type=pa.string()))
                kind = pa.string()
            else:
                try:
                    arrays.append(pa.array(values, type=kind))
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                    raise MatrixError(f"parquet column {name!r} holds {kind} values, but a record has another type ({exc})") from None
            fields.append(pa.field(name, kind))
        metadata = {
            JSON_COLUMNS_KEY: json.dumps(sorted(n for n in columns if n in self.types and self.types[n] is None)).encode(),
            DERIVED_COLUMNS_KEY: json.dumps(sorted(self.derived)).encode(),
        }
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def decode(table: pa.Table, include_derived: bool = False) -> list[dict[str, Any]]:
    """Records back from a table written by :class:`Encoder`."""
    meta = table.schema.metadata or {}
    json_cols = set(json.loads(meta.get(JSON_COLUMNS_KEY, b"[]")))
    derived = set() if include_derived else set(json.loads(meta.get(DERIVED_COLUMNS_KEY, b"[]")))
    names = [n for n in table.column_names if n not in derived]
    out = []
    for row in table.select(names).to_pylist():
        for name in json_cols.intersection(row):
            if row[name] is not None:
                row[name] = json.loads(row[name])
        out.append(row)
    return out


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with ``schema``'s columns in its order (missing ones null)."""
    arrays = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def unify(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """One schema over several part files: union of columns, union of JSON/derived markers."""
    merged = pa.unify_schemas([s.remove_metadata() for s in schemas])
    json_cols: set[str] = set()
    derived: set[str] = set()
    for s in schemas:
        meta = s.metadata or {}
        json_cols.update(json.loads(meta.get(JSON_COLUMNS_KEY, b"[]")))
        derived.update(json.loads(meta.get(DERIVED_COLUMNS_KEY, b"[]")))
    return merged.with_metadata({JSON_COLUMNS_KEY: json.dumps(sorted(json_cols)).encode(), DERIVED_COLUMNS_KEY: json.dumps(sorted(derived)).encode()})
