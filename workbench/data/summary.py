"""What is in an export, before training on it: ``workbench data inspect``.

:func:`summarize_export` reads the Parquet footers on the client (shards, rows, schema) and counts
nulls and label values in tasks on the workers, one task per partition (runs of whole row groups),
so nothing close to the whole export is ever in one process. Finished partitions are reported
through :func:`workbench.progress.task` (a bar on the command line), and to ``progress(done,
total)`` when one is given.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import dask.config
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dask.utils import format_bytes, parse_bytes

from .. import progress as progress_hook
from ..errors import DataError
from .labels import LABEL_KINDS, bool_value, labels_to_01
from .parquet import (
    arrow_kind,
    common_schema,
    expand_paths,
    null_counts,
    plan_columns,
    plan_partitions,
    read_footers,
    read_row_groups,
)

__all__ = ["summarize_export", "format_summary", "bigquery_type"]


def bigquery_type(field: pa.Field, logical: str | None = None) -> str:
    """The BigQuery type an exported column most likely had, from its Arrow type and Parquet logical type.

    BigQuery writes TIMESTAMP and DATETIME alike (a timestamp without time zone), so such a column is
    ``TIMESTAMP/DATETIME``; NUMERIC is DECIMAL(38, 9) and BIGNUMERIC DECIMAL(76, 38).
    """
    t = field.type
    if isinstance(t, pa.BaseExtensionType):
        name = getattr(t, "extension_name", "")
        if "json" in name:
            return "JSON"
        if "geo" in name:
            return "GEOGRAPHY"
        return bigquery_type(pa.field(field.name, t.storage_type), logical)
    kind = arrow_kind(t)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"REPEATED {bigquery_type(pa.field('element', t.value_type))}"
    if pa.types.is_struct(t):
        names = [t.field(i).name for i in range(t.num_fields)]
        return "RANGE" if names == ["start", "end"] else "STRUCT"
    if kind == "decimal":
        if (t.precision, t.scale) == (38, 9):
            return "NUMERIC"
        if (t.precision, t.scale) == (76, 38):
            return "BIGNUMERIC"
        return f"{'NUMERIC' if t.precision <= 38 and t.scale <= 9 else 'BIGNUMERIC'}({t.precision}, {t.scale})"
    if kind == "timestamp":
        return "TIMESTAMP" if t.tz else "TIMESTAMP/DATETIME"
    if kind == "string":
        upper = (logical or "").upper()
        return "JSON" if "JSON" in upper else "STRING"
    if kind == "binary":
        upper = (logical or "").upper()
        return "GEOGRAPHY" if "GEO" in upper else "BYTES"
    return {"bool": "BOOL", "int": "INT64", "float": "FLOAT64", "date": "DATE", "time": "TIME",
            "null": "(all null)"}.get(kind, str(t))


def summarize_export(
    path: str | os.PathLike | list,
    *,
    target: str | None = None,
    positive=None,
    drop=(),
    storage_options: dict | None = None,
    partition_size: str | int | None = None,
    client=None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Shards, rows, bytes, per-column types and null fractions, and the class balance of ``target``."""
    fs, files = expand_paths(path, storage_options)
    footers = read_footers(fs, files)
    schema = common_schema(files, footers, ignore=set(drop))
    if target is not None and target not in schema.names:
        raise DataError(f"target column {target!r} is not in the export", f"columns are: {', '.join(schema.names)}")
    with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
        sizes = list(pool.map(lambda f: int(fs.info(f).get("size") or 0), files))
    rows = sum(f.num_rows for f in footers)
    footer_nulls, _ = null_counts(footers, schema.names)
    planned, excluded, _ = plan_columns(schema, target, list(drop), False, footer_nulls, rows)
    features = {c.name: c.dtype for c in planned}
    partition_bytes = parse_bytes(partition_size or dask.config.get("workbench.read.partition_size"))
    parts, _ = plan_partitions(files, footers, schema.names, partition_bytes)
    target_kind = arrow_kind(schema.field(target).type) if target is not None else None

    counted = _count_parts(fs, parts, schema.names, target, target_kind, positive, client, progress)
    nulls = Counter()
    values, labels = Counter(), Counter()
    for part_nulls, part_values, part_labels in counted:
        nulls.update(part_nulls)
        values.update(part_values)
        labels.update(part_labels)

    logical = _logical_types(footers[0])
    columns = []
    for field in schema:
        if field.name == target:
            feature = "target -> int8 0/1"
        elif field.name in features:
            feature = features[field.name]
        else:
            feature = f"not a feature: {excluded.get(field.name, '?')}"
        columns.append({
            "name": field.name,
            "bigquery": bigquery_type(field, logical.get(field.name)),
            "arrow": str(field.type),
            "feature": feature,
            "nulls": int(nulls[field.name]),
            "null_fraction": nulls[field.name] / rows if rows else 0.0,
        })
    summary = {
        "path": path if isinstance(path, str) else [str(p) for p in path] if isinstance(path, list) else str(path),
        "shards": len(files),
        "rows": rows,
        "bytes": sum(sizes),
        "partitions": len(parts),
        "columns": columns,
        "features": len(features),
    }
    if target is not None:
        positives, negatives, other = labels.get(1, 0), labels.get(0, 0), labels.get(-1, 0)
        summary["target"] = {
            "name": target,
            "values": {str(k): int(v) for k, v in sorted(values.items(), key=lambda kv: -kv[1])},
            "positive": int(positives),
            "negative": int(negatives),
            "neither": int(other),
            "null": int(nulls[target]),
            "positive_rate": positives / (positives + negatives) if positives + negatives else None,
        }
    return summary


def format_summary(summary: dict) -> str:
    """The summary as the text ``workbench data inspect`` prints."""
    lines = [
        f"{summary['path']}: {summary['shards']} shard(s), {summary['rows']:,} rows, "
        f"{format_bytes(summary['bytes'])} on disk, {summary['partitions']} partition(s), "
        f"{summary['features']} feature(s)",
        "",
        f"{'column':<24} {'BigQuery':<22} {'Arrow':<28} {'nulls':>8}  feature after normalisation",
    ]
    for c in summary["columns"]:
        arrow = c["arrow"] if len(c["arrow"]) <= 28 else c["arrow"][:25] + "..."
        lines.append(f"{c['name'][:24]:<24} {c['bigquery'][:22]:<22} {arrow:<28} {c['null_fraction']:>8.2%}  {c['feature']}")
    t = summary.get("target")
    if t:
        rate = "-" if t["positive_rate"] is None else f"{t['positive_rate']:.4%}"
        minority, majority = sorted((t["positive"], t["negative"]))
        ratio = f"1:{majority / minority:.1f}" if minority else "1:inf"
        lines += [
            "",
            f"target {t['name']}: {t['positive']:,} positive, {t['negative']:,} negative "
            f"(positive rate {rate}, class ratio {ratio})"
            + (f", {t['null']:,} null (left out)" if t["null"] else "")
            + (f", {t['neither']:,} neither (name the positive class)" if t["neither"] else ""),
            "  values: " + ", ".join(f"{k} {v:,}" for k, v in list(t["values"].items())[:10])
            + (" ..." if len(t["values"]) > 10 else ""),
        ]
    return "\n".join(lines)


def _count_parts(fs, parts, names, target, target_kind, positive, client, progress):
    """Each partition's counts, in the order they finish: on ``client``'s workers, else in threads here."""
    if client is None:
        client = _current_client()
    total = len(parts)
    if progress:
        progress(0, total)
    kwargs = dict(fs=fs, names=names, target=target, target_kind=target_kind, positive=positive)
    if client is None:  # no cluster: threads in this process
        from concurrent.futures import as_completed

        pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        futures = [pool.submit(_count_part, p, **kwargs) for p in parts]
    else:
        from distributed import as_completed

        pool = None
        futures = client.map(_count_part, parts, pure=False, **kwargs)
    results = []
    try:
        with progress_hook.task("inspect: counting nulls and labels", total) as bar:
            for future in as_completed(futures):
                results.append(future.result())
                bar.advance()
                if progress:
                    progress(len(results), total)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return results


def _count_part(part, fs, names, target, target_kind, positive):
    """Null counts per column and the target's values in one partition (runs on a worker)."""
    path, row_groups, _ = part
    table = read_row_groups(fs, path, row_groups, names)
    nulls = {name: table.column(name).null_count for name in names}
    values, labels = {}, {}
    if target is not None:
        valid = pc.drop_null(table.column(target))
        for item in pc.value_counts(valid).to_pylist():
            values[item["values"]] = item["counts"]
        if target_kind in LABEL_KINDS and len(valid):
            if target_kind == "bool" and positive is not None and bool_value(positive) is None:
                raise DataError(f"positive={positive!r} is not a BOOL value for target {target!r}", "use true or false")
            kinds, n = np.unique(labels_to_01(valid, target_kind, positive), return_counts=True)
            labels = {int(k): int(c) for k, c in zip(kinds, n)}
    return nulls, values, labels


def _logical_types(footer: pq.FileMetaData) -> dict[str, str]:
    out = {}
    for i in range(footer.num_columns):
        column = footer.schema.column(i)
        if "." not in column.path:
            out[column.path] = str(getattr(column.logical_type, "type", column.logical_type))
    return out


def _current_client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None
