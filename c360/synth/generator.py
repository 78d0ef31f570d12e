"""Orchestration: build the world, write every source's daily drops, inject defects.

Layout written (see shared/spec/raw-data-contract.md)::

    <landing>/<source>/<YYYY-MM-DD>/<source>_<YYYYMMDD>.<csv|csv.gz|jsonl|parquet>
    <landing>/_meta/generation.json           summary (also returned)
    <landing>/_meta/customer_truth.parquet    latent type, churn, dormancy... per customer
    <landing>/_meta/adoptions.parquet         every product adoption in the history
    <landing>/_meta/truth/probabilities.parquet   (worlds other than demo) every customer x
                                              product: true probability of adopting it in the
                                              30 days after as_of, eligible, held
    <landing>/_meta/truth/adoptions.parquet   the adoptions drawn from those probabilities
                                              (after as_of: never delivered as landing data)

Formats: transactions ``.csv.gz``, events ``.jsonl``, holdings ``.parquet`` (all columns
strings), everything else ``.csv``. Extra files in dirty mode carry a suffix:
``_late`` (rows delivered after their date), ``_resend``, ``_redelivery``.

Determinism: every random draw comes from a numpy Generator seeded with (seed, stream,
month/day); files are written from that alone, so the same arguments give byte-identical
files whatever the number of worker processes.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import multiprocessing as mp
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from c360.contract import SOURCES

from . import activity, defects, fmt, render
from .fmt import Calendar
from .lifecycle import decide_fates, simulate_products
from .population import CITY_TIER, build_population, simulate_crm_changes
from .profiles import TYPE_NAMES
from .service import (
    add_mis_selling,
    drop_after_exit,
    simulate_complaints,
    simulate_feedback,
    simulate_interactions,
)
from .vocab import CITIES
from .world import World, rng_for
from .worlds import TRUTH_DAYS, WORLDS, simulate_world_products

EXT = {"customers": "csv", "product_catalog": "csv", "holdings": "parquet", "transactions": "csv.gz",
       "events": "jsonl", "interactions": "csv", "feedback": "csv", "complaints": "csv",
       "campaign_responses": "csv"}
FREE_TEXT = {"feedback", "complaints"}  # quoted CSV (comments may contain commas)
SOURCE_IX = {s: i for i, s in enumerate(SOURCES)}
Progress = Callable[[str, int, int], None]


@dataclass
class GenerationSummary:
    customers: int
    days: int
    start_date: str
    as_of: str
    seed: int
    dirty_rate: float
    rows: dict[str, int]  # logical rows generated per source (before any defect)
    rows_in_files: dict[str, int]  # data rows physically written (defects, copies, re-sends included)
    files: dict[str, int]  # files written per source
    files_written: int
    defects: dict[str, int]  # injected defects per kind (0 in clean mode)
    defects_by_source: dict[str, dict[str, int]]
    variants: dict[str, int]  # valid but unusual representations (offsets, boolean spellings)
    file_defects: list[dict]  # file-level defects with their paths (relative to landing)
    truth: dict[str, float] = field(default_factory=dict)  # headline facts of the simulation

    def to_dict(self) -> dict:
        return asdict(self)


# =========================================================================== sink
class Sink:
    """Writes one source/day file, applying row-level defects in dirty mode."""

    def __init__(self, landing: Path, cal: Calendar, seed: int, rate: float):
        self.landing, self.cal, self.seed, self.rate = landing, cal, seed, rate
        self.rows: Counter = Counter()
        self.rows_in_files: Counter = Counter()
        self.files: Counter = Counter()
        self.defects: Counter = Counter()  # keys (source, kind)
        self.variants: Counter = Counter()

    def path(self, source: str, day: int, suffix: str = "", tag_day: int | None = None) -> Path:
        tag = self.cal.date_str(day if tag_day is None else tag_day).replace("-", "")
        return self.landing / source / self.cal.date_str(day) / f"{source}_{tag}{suffix}.{EXT[source]}"

    def emit(self, source: str, day: int, tab: pa.Table) -> None:
        """Deliver the rows of one business day of a source."""
        self.rows[source] += tab.num_rows
        if self.rate > 0 and source != "product_catalog":
            rng = rng_for(self.seed, "defects", SOURCE_IX[source], day)
            inj = defects.inject(tab, source, EXT[source], self.rate, rng, day, self.cal.days - 1)
            for kind, k in inj.counts.items():
                self.defects[(source, kind)] += k
            self.variants.update(inj.variants)
            self.write(source, self.path(source, day), inj.main, inj.raw_lines)
            for target, late in sorted(inj.late.items()):
                self.write(source, self.path(source, target, "_late", tag_day=day), late)
        else:
            self.write(source, self.path(source, day), tab)

    def write(self, source: str, path: Path, tab: pa.Table, raw_lines=()) -> None:
        ext = EXT[source]
        quote = source in FREE_TEXT or self.rate > 0
        if raw_lines:  # CSV with hand-written malformed lines spliced in
            pieces, prev = [fmt.csv_bytes(tab.slice(0, 0), quote=quote)], 0
            for pos, line in raw_lines:
                pieces.append(fmt.csv_bytes(tab.slice(prev, pos - prev), header=False, quote=quote))
                pieces.append(line.encode("utf-8"))
                prev = pos
            pieces.append(fmt.csv_bytes(tab.slice(prev), header=False, quote=quote))
            data = b"".join(pieces)
            data = fmt.gzip_bytes(data) if ext == "csv.gz" else data
        else:
            data = fmt.encode(tab, ext, quote=quote, numeric=("duration_ms",))
        fmt.write_bytes(path, data)
        self.files[source] += 1
        self.rows_in_files[source] += tab.num_rows + len(raw_lines)

    def emit_by_day(self, source: str, tab: pa.Table, day: np.ndarray) -> None:
        """Cut a table sorted by drop day into daily files (days without rows get none)."""
        day = np.asarray(day)
        uniq, first = np.unique(day, return_index=True)
        bounds = list(first) + [len(day)]
        lines = None
        if self.rate == 0 and EXT[source] == "jsonl":  # clean JSON: render the month at once
            lines = fmt.jsonl_lines(tab, numeric=("duration_ms",))
        for i, d in enumerate(uniq):
            if not 0 <= d < self.cal.days:
                continue
            part = tab.slice(bounds[i], bounds[i + 1] - bounds[i])
            if lines is None:
                self.emit(source, int(d), part)
            else:
                data = fmt.concat_strings(lines.slice(bounds[i], part.num_rows))
                fmt.write_bytes(self.path(source, int(d)), data)
                self.rows[source] += part.num_rows
                self.rows_in_files[source] += part.num_rows
                self.files[source] += 1

    def stats(self) -> dict:
        return dict(rows=self.rows, rows_in_files=self.rows_in_files, files=self.files,
                    defects=self.defects, variants=self.variants)


# ========================================================================= tasks
_WORLD: World | None = None  # set in the parent before forking workers
_LANDING: Path | None = None
_RATE: float = 0.0


def _run_task(task: tuple) -> tuple[tuple, dict]:
    w, sink = _WORLD, Sink(_LANDING, _WORLD.cal, _WORLD.seed, _RATE)
    if task[0] == "static":
        _write_static(w, sink)
    else:
        _write_month(w, sink, task[1])
    return task, sink.stats()


def _write_month(w: World, sink: Sink, m: int) -> None:
    _, a, b = w.cal.months[m]
    tab, day = activity.transactions(w, m, a, b)
    sink.emit_by_day("transactions", tab, day)
    del tab
    tab, day = activity.events(w, m, a, b)
    sink.emit_by_day("events", tab, day)
    del tab
    snaps = activity.snapshot_days(w)
    for i, s in enumerate(snaps):
        if a <= s < b:
            prev = snaps[i - 1] if i else s - 1
            sink.emit("holdings", s, activity.holdings(w, s, prev))


def _write_static(w: World, sink: Sink) -> None:
    tab, day = render.customers(w)
    sink.emit_by_day("customers", tab, day)
    if sink.rate > 0:
        _overlapping_resend(w, sink, tab, day)
    sink.emit("product_catalog", 0, render.catalog(changed=False, cat=w.cat))
    if w.catalog_resend_day > 0:
        sink.emit("product_catalog", w.catalog_resend_day, render.catalog(changed=True, cat=w.cat))
    for source, fn in (("interactions", render.interactions), ("feedback", render.feedback),
                       ("complaints", render.complaints), ("campaign_responses", render.campaign_responses)):
        tab, day = fn(w)
        sink.emit_by_day(source, tab, day)


def _overlapping_resend(w: World, sink: Sink, tab: pa.Table, day: np.ndarray) -> None:
    """Customer rows re-sent 1-10 days later with a later updated_at (same content)."""
    rng = rng_for(w.seed, "defects", 99)
    k = len(defects.applicable("customers", "csv"))
    rows = np.flatnonzero(rng.random(tab.num_rows) < sink.rate / k)
    delay = rng.integers(1, 11, len(rows))
    target = day[rows] + delay
    ok = target < w.cal.days
    rows, delay, target = rows[ok], delay[ok], target[ok]
    if len(rows) == 0:
        return
    sub = tab.take(pa.array(rows))
    ts = pc.strptime(sub.column("updated_at"), format="%Y-%m-%dT%H:%M:%S", unit="s")
    later = pc.add(ts, pa.array(delay.astype("timedelta64[D]").astype("timedelta64[s]")))
    i = sub.column_names.index("updated_at")
    sub = sub.set_column(i, "updated_at", pc.strftime(later, format="%Y-%m-%dT%H:%M:%S"))
    order = np.argsort(target, kind="stable")
    sub, target = sub.take(pa.array(order)), target[order]
    uniq, first = np.unique(target, return_index=True)
    bounds = list(first) + [len(target)]
    for j, d in enumerate(uniq):
        part = sub.slice(bounds[j], bounds[j + 1] - bounds[j])
        sink.write("customers", sink.path("customers", int(d), "_resend"), part)
        sink.defects[("customers", "overlapping_resend")] += part.num_rows


# ===================================================================== generate
def build_world(customers: int, days: int, as_of: dt.date, seed: int,
                progress: Progress | None = None, world: str = "demo", *, leavers: bool = True) -> World:
    """Phase 1: simulate the bank at customer level (``world``: one of :data:`WORLDS`;
    ``leavers``: :func:`decide_fates`)."""
    steps = ["population", "service", "churn", "crm", "products", "feedback"]
    report = (lambda i: progress("simulate", i, len(steps))) if progress else (lambda i: None)
    report(0)
    cal = Calendar(as_of, days)
    w = build_population(cal, customers, seed)
    report(1)
    simulate_interactions(w)
    simulate_complaints(w)
    report(2)
    decide_fates(w, leavers)
    drop_after_exit(w)
    report(3)
    simulate_crm_changes(w)
    w.catalog_resend_day = days // 2
    report(4)
    spec = WORLDS[world]
    if spec is None:
        simulate_products(w)
    else:
        w.world = world
        simulate_world_products(w, spec)
    add_mis_selling(w)
    report(5)
    simulate_feedback(w)
    report(6)
    return w


def _validate(customers, days, as_of, seed, landing, dirty_rate, world="demo") -> None:
    if world not in WORLDS:
        raise ValueError(f"world must be one of {', '.join(WORLDS)}, got {world!r}")
    if not isinstance(customers, (int, np.integer)) or isinstance(customers, bool) or customers < 1:
        raise ValueError(f"customers must be an integer >= 1, got {customers!r}")
    if not isinstance(days, (int, np.integer)) or isinstance(days, bool) or days < 1:
        raise ValueError(f"days must be an integer >= 1, got {days!r}")
    if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
        raise ValueError(f"as_of must be a datetime.date, got {as_of!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(dirty_rate, (int, float)) and 0.0 <= float(dirty_rate) <= 0.5):
        raise ValueError(f"dirty_rate must be within [0, 0.5], got {dirty_rate!r}")
    if landing is None:
        raise ValueError("landing must be a directory path")


def generate(customers: int, days: int, as_of: dt.date, seed: int, landing: Path,
             dirty_rate: float = 0.0, progress: Progress | None = None, *,
             workers: int | None = None, overwrite: bool = False, world: str = "demo",
             leavers: bool = True) -> GenerationSummary:
    """Generate a synthetic bank's landing zone.

    Args:
        customers: customers in the bank over the history (existing + onboarded during it).
        days: length of the history; it ends at ``as_of`` inclusive.
        as_of: last business day of the history.
        seed: random seed; same arguments => byte-identical files.
        landing: landing-zone root directory.
        dirty_rate: share of rows (0..0.5) that receive an injected defect.
        progress: called as ``progress(stage, done, total)``.
        workers: processes for phase 2 (default: up to 2 for large banks, 1 for small ones).
            The output does not depend on it.
        overwrite: delete existing source folders and ``_meta`` in ``landing`` first.
        world: the simulated bank (:data:`c360.synth.worlds.WORLDS`): ``demo`` (the default,
            the original bank) or another catalogue with other adoption drivers, whose
            truth after as_of is written under ``_meta/truth/``.
        leavers: False for a bank where nobody leaves or goes dormant (no attrition).

    Raises:
        ValueError: bad arguments, or ``landing`` already holds generated data and
            ``overwrite`` is false.
    """
    _validate(customers, days, as_of, seed, landing, dirty_rate, world)
    customers, days, seed, dirty_rate = int(customers), int(days), int(seed), float(dirty_rate)
    landing = Path(landing)
    existing = [s for s in [*SOURCES, "_meta"] if (landing / s).exists()]
    if existing:
        if not overwrite:
            raise ValueError(f"{landing} already contains {', '.join(existing)}; pass overwrite=True to replace")
        for s in existing:
            shutil.rmtree(landing / s)
    landing.mkdir(parents=True, exist_ok=True)

    w = build_world(customers, days, as_of, seed, progress, world, leavers=leavers)

    # Phase 2: one task for the low-volume sources, one per calendar month.
    tasks = [("static",)] + [("month", m) for m in range(len(w.cal.months))]
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if customers * days >= 2_000_000 else 1
    global _WORLD, _LANDING, _RATE
    _WORLD, _LANDING, _RATE = w, landing, dirty_rate
    results: list[tuple[tuple, dict]] = []
    if progress:
        progress("write", 0, len(tasks))
    try:
        if workers > 1:
            with mp.get_context("fork").Pool(workers) as pool:
                for r in pool.imap_unordered(_run_task, tasks):
                    results.append(r)
                    if progress:
                        progress("write", len(results), len(tasks))
        else:
            for t in tasks:
                results.append(_run_task(t))
                if progress:
                    progress("write", len(results), len(tasks))
    finally:
        _WORLD = None

    merged = {k: Counter() for k in ("rows", "rows_in_files", "files", "defects", "variants")}
    for _, st in sorted(results, key=lambda r: r[0]):
        for k in merged:
            merged[k].update(st[k])
    file_defects: list[dict] = []
    if dirty_rate > 0:
        file_defects = _file_defects(w, landing, merged)

    by_source: dict[str, dict[str, int]] = {s: {} for s in SOURCES}
    per_kind = {k: 0 for k in defects.ALL_KINDS}
    for (source, kind), k in sorted(merged["defects"].items()):
        by_source[source][kind] = by_source[source].get(kind, 0) + k
        per_kind[kind] += k
    summary = GenerationSummary(
        customers=customers, days=days, start_date=w.cal.start.isoformat(), as_of=as_of.isoformat(),
        seed=seed, dirty_rate=dirty_rate,
        rows={s: int(merged["rows"][s]) for s in SOURCES},
        rows_in_files={s: int(merged["rows_in_files"][s]) for s in SOURCES},
        files={s: int(merged["files"][s]) for s in SOURCES},
        files_written=int(sum(merged["files"].values())),
        defects=per_kind, defects_by_source=by_source,
        variants={k: int(v) for k, v in sorted(merged["variants"].items())},
        file_defects=file_defects, truth=_truth_summary(w),
    )
    _write_meta(w, landing, summary)
    if progress:
        progress("finalize", 1, 1)
    return summary


# ================================================================== file defects
def _count_rows(path: Path) -> int:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return max(data.count(b"\n") - 1, 0)


def _file_defects(w: World, landing: Path, merged: dict) -> list[dict]:
    """Whole-file defects: re-sends, a truncated gzip, a GBK-encoded CSV.

    Each unreadable file is followed by a correct re-delivery on the next day, as a bank
    would do once the pipeline reports the broken file.
    """
    cal = w.cal
    sink = Sink(landing, cal, w.seed, 0.0)
    out: list[dict] = []
    H = cal.days
    rel = lambda p: str(p.relative_to(landing))  # noqa: E731

    def find(source: str, preferred: int, exclude=()) -> int | None:
        """The nearest day >= preferred (then earlier) with a main file of the source."""
        for d in list(range(preferred, H)) + list(range(preferred - 1, -1, -1)):
            if d not in exclude and sink.path(source, d).exists():
                return d
        return None

    def record(kind: str, source: str, path: Path, rows: int, **extra) -> None:
        out.append(dict(kind=kind, source=source, path=rel(path), rows=rows, **extra))
        merged["defects"][(source, kind)] += 1
        merged["files"][source] += 1 if kind.startswith("resent") else 0

    used: set[int] = set()
    # 1. truncated .csv.gz (transactions), re-delivered complete the next day
    d = find("transactions", (H * 3) // 10)
    if d is not None:
        used.add(d)
        p = sink.path("transactions", d)
        data = p.read_bytes()
        rows = _count_rows(p)
        redo = None
        if d + 1 < H:
            redo = sink.path("transactions", d + 1, "_redelivery", tag_day=d)
            fmt.write_bytes(redo, data)
            merged["files"]["transactions"] += 1
            merged["rows_in_files"]["transactions"] += rows
        fmt.write_bytes(p, data[: max(len(data) * 55 // 100, 20)])
        record("truncated_gzip", "transactions", p, rows, redelivered_as=rel(redo) if redo else None)

    # 2. a CSV in GBK (Chinese comments make it invalid UTF-8), re-delivered in UTF-8
    for source in ("feedback", "complaints", "customers"):
        d = find(source, H // 2)
        if d is None:
            continue
        p = sink.path(source, d)
        text = p.read_bytes().decode("utf-8")
        gbk = text.encode("gbk")
        try:
            gbk.decode("utf-8")
            continue  # plain ASCII content: would still read as UTF-8, try another source
        except UnicodeDecodeError:
            pass
        rows = _count_rows(p)
        redo = None
        if d + 1 < H:
            redo = sink.path(source, d + 1, "_redelivery", tag_day=d)
            fmt.write_bytes(redo, text.encode("utf-8"))
            merged["files"][source] += 1
            merged["rows_in_files"][source] += rows
        fmt.write_bytes(p, gbk)
        record("gbk_encoding", source, p, rows, redelivered_as=rel(redo) if redo else None)
        break

    # 3. a whole file delivered again later under another name
    d = find("transactions", (H * 4) // 10, exclude=used)
    if d is not None:
        used.add(d)
        p = sink.path("transactions", d)
        copy = sink.path("transactions", min(d + 2, H - 1), "_resend", tag_day=d)
        if copy != p:
            fmt.write_bytes(copy, p.read_bytes())
            rows = _count_rows(p)
            merged["rows_in_files"]["transactions"] += rows
            record("resent_file", "transactions", copy, rows, original=rel(p))

    # 4. ... and once under the same name in a later folder
    for source in ("interactions", "campaign_responses", "transactions"):
        d = find(source, (H * 6) // 10, exclude=used if source == "transactions" else ())
        if d is None or d + 1 >= H:
            continue
        p = sink.path(source, d)
        target = min(d + 3, H - 1)
        copy = landing / source / cal.date_str(target) / p.name
        fmt.write_bytes(copy, p.read_bytes())
        rows = _count_rows(p)
        merged["rows_in_files"][source] += rows
        record("resent_file_same_name", source, copy, rows, original=rel(p))
        break
    return out


# ========================================================================== meta
def _truth_summary(w: World) -> dict[str, float]:
    H = w.cal.days
    alive0 = w.onboard <= 0
    ad = w.adoptions
    months = max(len(w.cal.months), 1)
    return {
        "customers_at_start": int(alive0.sum()),
        "customers_onboarded": int((w.onboard > 0).sum()),
        "winding_down": int((w.winddown < H).sum()),
        "churned_closed": int((w.close < H).sum()),
        "dormant": int((w.dormant < H).sum()),
        "adoptions": int(len(ad["c"])),
        "adopters_per_month_pct": round(100 * len(np.unique(ad["c"] * months + w.cal.month_of_day[ad["day"]]))
                                        / max(w.n, 1) / months, 3) if len(ad["c"]) else 0.0,
        "adoptions_via_offer": int(ad["via_offer"].sum()) if len(ad["c"]) else 0,
        "offers": int(len(w.offers["c"])),
        "interactions": int(len(w.interactions["c"])),
        "complaints": int(len(w.complaints["c"])),
        "accounts": int(len(w.acct_cust)),
        **({} if w.truth_prob is None else {
            "truth_eligible_pairs": int(w.truth_eligible.sum()),
            "truth_expected_adoptions_30d": round(float(w.truth_prob[w.truth_eligible].sum(dtype=np.float64)), 3),
            "truth_adoptions_30d": int(len(w.truth_adoptions["c"])),
        }),
    }


def _write_meta(w: World, landing: Path, summary: GenerationSummary) -> None:
    meta = landing / "_meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "generation.json").write_text(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                          encoding="utf-8")
    H = w.cal.days
    c = np.arange(w.n)

    def day_or_null(d: np.ndarray) -> pa.Array:
        return fmt.mask(w.cal.dates(np.where(d < H, d, 0)), d >= H)

    ncomp = np.bincount(w.complaints["c"], minlength=w.n)
    nadopt = np.bincount(w.adoptions["c"], minlength=w.n)
    truth = pa.table({
        "customer_id": w.customer_ids,
        "latent_type": fmt.pick(TYPE_NAMES, w.ctype),
        "age_at_as_of": pa.array(np.floor(w.age_years(c, H - 1)).astype(np.int32)),
        "annual_income": pa.array(w.income),
        "city": fmt.pick([x[0] for x in CITIES], w.city),
        "city_tier": pa.array(CITY_TIER[w.city].astype(np.int8)),
        "onboarding_date": w.cal.dates(w.onboard),
        "onboarded_in_history": pa.array(w.onboard > 0),
        "has_salary": pa.array(w.has_salary),
        "risk_tolerance_initial": fmt.mask(fmt.pick(("", "R1", "R2", "R3", "R4", "R5"), w.risk), w.risk == 0),
        "marketing_consent_initial": pa.array(w.consent),
        "winding_down": pa.array(w.winddown < H),
        "winddown_date": day_or_null(w.winddown),
        "churned": pa.array(w.close < H),
        "churn_date": day_or_null(w.close),
        "dormant": pa.array(w.dormant < H),
        "dormant_date": day_or_null(np.where(w.dormant < 0, 0, w.dormant)),
        "satisfaction": pa.array(w.satisfaction.astype(np.float64)),
        "complaints": pa.array(ncomp.astype(np.int32)),
        "adoptions": pa.array(nadopt.astype(np.int32)),
    })
    pq.write_table(truth, meta / "customer_truth.parquet", compression="zstd")
    ad = w.adoptions
    pq.write_table(pa.table({
        "customer_id": w.customer_ids.take(pa.array(ad["c"])),
        "product_code": fmt.pick(w.cat.codes, ad["prod"]),
        "family": pa.array(w.cat.family[ad["prod"]]),
        "opened_date": w.cal.dates(ad["day"]),
        "via_offer": pa.array(ad["via_offer"].astype(bool)),
        "had_intent": pa.array(ad["intent"].astype(bool)),
    }), meta / "adoptions.parquet", compression="zstd")
    if w.truth_prob is not None:
        _write_truth(w, meta / "truth")


def _write_truth(w: World, out: Path) -> None:
    """``probabilities.parquet``: one row per customer x product (product by product, one
    row group each: bounded memory at 1M customers); ``adoptions.parquet``: what happened
    in the 30 days after as_of; ``world.json``: the world, as_of and horizon."""
    out.mkdir(parents=True, exist_ok=True)
    H = w.cal.days
    schema = pa.schema([("customer_id", pa.string()), ("product_code", pa.string()), ("family", pa.string()),
                        ("probability", pa.float64()), ("eligible", pa.bool_()), ("held", pa.bool_())])
    held = np.zeros((len(w.cat.products), w.n), dtype=bool)
    open_at = (w.acct_open < H) & (w.acct_close >= H)
    held[w.acct_prod[open_at], w.acct_cust[open_at]] = True
    with pq.ParquetWriter(out / "probabilities.parquet", schema, compression="zstd") as writer:
        for p, prod in enumerate(w.cat.products):
            writer.write_table(pa.table({
                "customer_id": w.customer_ids,
                "product_code": pa.array(np.full(w.n, prod.code)),
                "family": pa.array(np.full(w.n, prod.family)),
                "probability": pa.array(w.truth_prob[p].astype(np.float64)),
                "eligible": pa.array(w.truth_eligible[p]),
                "held": pa.array(held[p]),
            }, schema=schema))
    ta = w.truth_adoptions
    order = np.lexsort((ta["prod"], ta["c"]))
    pq.write_table(pa.table({
        "customer_id": w.customer_ids.take(pa.array(ta["c"][order])),
        "product_code": fmt.pick(w.cat.codes, ta["prod"][order]),
        "opened_date": w.cal.dates(ta["day"][order]),
    }), out / "adoptions.parquet", compression="zstd")
    (out / "world.json").write_text(json.dumps({
        "world": w.world, "as_of": w.cal.as_of.isoformat(), "horizon_days": TRUTH_DAYS,
        "products": list(w.cat.codes)}, indent=2) + "\n", encoding="utf-8")


__all__ = ["generate", "build_world", "GenerationSummary"]
