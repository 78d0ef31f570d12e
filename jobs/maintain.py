"""Maintain: compact every Delta table's small files, then vacuum what no version needs.

Daily MERGEs, partition overwrites and the bookkeeping tables' one-row commits leave many
small files; reads get slower with every one. For every table of the lake (scratch tables
``*/_staging/*`` excepted) this job

1. compacts small files into files of about ``maintenance.target_file_mb`` (delta-rs
   ``optimize.compact()``, partition by partition; rows and content are unchanged, the
   table gets a new version),
2. vacuums: deletes data files that no table version younger than
   ``maintenance.vacuum_retention_hours`` references (replaced by compaction, overwrites or
   MERGEs, or left behind by a killed write). Time travel to a version older than the
   retention then fails with a "file not found" error instead of returning wrong rows.
3. writes a checkpoint, so readers replay one Parquet file instead of every commit.

It holds the lake's lock (:mod:`c360.lock`: a flock on a local lake, a lock object on S3),
so it never runs while a pipeline step writes the same lake; run it after the daily run.

Maintenance is metadata plus file rewriting on the driver's machine (``deltalake``,
which needs direct access to the lake's storage: a local path, or a URI with the storage
options of :mod:`c360.storage`); it does not need the Spark engine. With
a Spark session the run is also recorded in ``ops/audit_log``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from c360 import lake, lock, ops, storage
from c360.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass
class TableStats:
    files: int
    bytes: int
    rows: int | None

    @property
    def avg_file_mb(self) -> float:
        return round(self.bytes / self.files / 1e6, 3) if self.files else 0.0


@dataclass
class TableResult:
    table: str
    version_before: int
    version_after: int
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    rows_before: int | None
    rows_after: int | None
    compacted_files_removed: int
    compacted_files_added: int
    vacuumed_files: int
    seconds: float

    def as_dict(self) -> dict:
        d = asdict(self)
        d["avg_file_mb_before"] = round(self.bytes_before / self.files_before / 1e6, 3) if self.files_before else 0.0
        d["avg_file_mb_after"] = round(self.bytes_after / self.files_after / 1e6, 3) if self.files_after else 0.0
        return d


def table_stats(path: str) -> TableStats:
    """Files, bytes and rows of the table's current version (from the Delta log only)."""
    actions = lake.delta_table(path).get_add_actions(flatten=True)
    names = actions.schema.names
    sizes = actions.column("size_bytes").to_pylist() if "size_bytes" in names else []
    rows = None
    if "num_records" in names:
        rows = int(sum(v for v in actions.column("num_records").to_pylist() if v is not None))
    return TableStats(files=actions.num_rows, bytes=int(sum(s or 0 for s in sizes)), rows=rows)


def maintain_table(path: str, retention_hours: int, target_file_mb: int | None = None,
                   checkpoint: bool = True) -> TableResult:
    """Compact, vacuum and checkpoint one table; returns before/after figures."""
    started = time.perf_counter()
    dt = lake.delta_table(path)
    version_before = dt.version()
    before = table_stats(path)
    target = target_file_mb * 1024 * 1024 if target_file_mb else None
    metrics = dt.optimize.compact(target_size=target) if before.files > 1 else {}
    # Files replaced by compaction (or earlier overwrites and MERGEs) older than the
    # retention, and files no version references at all (full=True: a killed write's).
    # enforce_retention_duration=False: the configured retention is the operator's decision,
    # also when it is shorter than the table's delta.deletedFileRetentionDuration.
    dt = lake.delta_table(path)
    vacuumed = dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False,
                         full=True)
    dt = lake.delta_table(path)
    if checkpoint and dt.version() > 0:
        dt.create_checkpoint()
    after = table_stats(path)
    return TableResult(
        table=path, version_before=version_before, version_after=dt.version(),
        files_before=before.files, files_after=after.files, bytes_before=before.bytes, bytes_after=after.bytes,
        rows_before=before.rows, rows_after=after.rows,
        compacted_files_removed=int(metrics.get("numFilesRemoved", 0) or 0),
        compacted_files_added=int(metrics.get("numFilesAdded", 0) or 0),
        vacuumed_files=len(vacuumed), seconds=round(time.perf_counter() - started, 3))


def lake_tables(lake_dir: Path | str, only: list[str] | None = None) -> list[str]:
    """``layer/name`` of every table to maintain: scratch tables (``/_...``) left out;
    ``only``: table names or ``layer/`` prefixes."""
    names = [t for t in lake.tables(lake_dir) if "/_" not in t]
    if only:
        names = [t for t in names if any(t == w or (w.endswith("/") and t.startswith(w)) for w in only)]
    return names


def run(settings: Settings, spark=None, *, tables: list[str] | None = None, retention_hours: int | None = None,
        progress: Progress | None = None, run_id: str | None = None) -> dict:
    """Maintain every table of the lake (or ``tables``); with ``spark``, record an audit row.

    Returns ``{"retention_hours", "tables": {layer/name: figures}, "files_before",
    "files_after", "vacuumed_files", "seconds"}``.
    """
    conf = settings.maintenance
    hours = conf.vacuum_retention_hours if retention_hours is None else int(retention_hours)
    if hours < 0:
        raise ValueError(f"retention_hours must be >= 0, got {hours}")
    names = lake_tables(settings.lake, tables)
    if tables and not names:
        raise ValueError(f"no table of {settings.lake} matches {', '.join(tables)}")
    run_id = run_id or f"maintain-{ops.utcnow():%Y%m%dT%H%M%S}"
    # The lake's lock (c360.lock): no pipeline step writes while files are rewritten and deleted.
    with lock.for_settings(settings, run_id=run_id, step="maintain"):
        return _run(settings, spark, names, hours, progress, run_id)


def _run(settings: Settings, spark, names: list[str], hours: int, progress: Progress | None, run_id: str) -> dict:
    conf = settings.maintenance
    started_at = ops.utcnow()
    started = time.perf_counter()
    before_versions = ops.snapshot_versions(settings.lake)
    results: dict[str, dict] = {}
    for i, name in enumerate(names):
        if progress:
            progress(f"maintain {name}", i, len(names))
        path = storage.join(settings.lake, name)
        try:
            res = maintain_table(path, hours, conf.target_file_mb)
        except Exception as exc:  # noqa: BLE001 - one table's conflict must not stop the others
            log.warning("maintenance of %s failed: %s", name, exc)
            results[name] = {"table": name, "error": f"{type(exc).__name__}: {exc}"}
            continue
        d = res.as_dict()
        d["table"] = name
        results[name] = d
    if progress:
        progress("maintain", len(names), len(names))
    ok = [r for r in results.values() if "error" not in r]
    summary = {
        "retention_hours": hours,
        "target_file_mb": conf.target_file_mb,
        "tables": results,
        "files_before": sum(r["files_before"] for r in ok),
        "files_after": sum(r["files_after"] for r in ok),
        "bytes_before": sum(r["bytes_before"] for r in ok),
        "bytes_after": sum(r["bytes_after"] for r in ok),
        "vacuumed_files": sum(r["vacuumed_files"] for r in ok),
        "failed": sorted(r["table"] for r in results.values() if "error" in r),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if spark is not None:
        after_versions = ops.snapshot_versions(settings.lake)
        outputs = {t: v for t, v in after_versions.items() if before_versions.get(t) != v and t in results}
        counts = {t: r["rows_after"] for t, r in results.items() if r.get("rows_after") is not None and t in outputs}
        details = {k: v for k, v in summary.items() if k != "tables"}
        ops.record_audit(spark, settings.lake, run_id=run_id,
                         job="maintain", as_of=None, status="failed" if summary["failed"] else "succeeded",
                         started_at=started_at, inputs={}, outputs=outputs, row_counts=counts, details=details,
                         error=("failed: " + ", ".join(summary["failed"])) if summary["failed"] else None)
    return summary


__all__ = ["run", "maintain_table", "table_stats", "lake_tables", "TableResult", "TableStats"]
