"""``c360``: the command line. It calls the same job functions as the Airflow DAGs.

    c360 generate --customers N --days D --as-of YYYY-MM-DD --seed S --landing DIR [--dirty-rate R] [--world W]
    c360 run --landing DIR --lake DIR --as-of YYYY-MM-DD [--steps ingest,silver,...]
    c360 demo
    c360 maintain [--lake DIR] [--retention-hours H] [--tables silver/,gold/customer_360]
    c360 erase --customer-id ID [--lake DIR] [--retention-hours H]
    c360 evaluate --landing DIR --lake DIR --as-of YYYY-MM-DD
    c360 cluster up|down|status [--dir .cluster]   (a local Spark standalone cluster)

Long work shows progress bars; each command ends with a summary table; a failure exits
non-zero with one clear line (``--debug`` shows the traceback).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from datetime import date, datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from c360 import storage
from c360.lock import LakeBusy
from c360.settings import ConfigError, Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Customer 360 profiling and next-best-product pipeline for retail banks.")
console = Console(stderr=True)
out = Console()

DEMO_CUSTOMERS = 10_000
DEMO_DAYS = 395  # 13 months
DEMO_AS_OF = date(2026, 6, 30)
DEMO_SEED = 42
DEMO_DIRTY_RATE = 0.01  # a few defects, so the demo shows quarantine at work
EXIT_LAKE_BUSY = 75  # EX_TEMPFAIL: another run holds the lake; try again later


class CliError(Exception):
    """An error whose message is shown to the user as it is."""


def _parse_date(value: str, option: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise CliError(f"{option} must be a date YYYY-MM-DD, got {value!r}") from None


def _settings(landing: Optional[Path | str] = None, lake: Optional[Path | str] = None) -> Settings:
    return load_settings().with_paths(landing=landing, lake=lake)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


class _Bars:
    """Adapts ``progress(stage, done, total)`` callbacks to one rich bar per stage."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        group = stage.split(" ")[0]
        if group not in self.tasks:
            self.tasks[group] = self.progress.add_task(group, total=total)
        self.progress.update(self.tasks[group], completed=done, total=total, description=stage)


def _run_guarded(fn, debug: bool) -> None:
    """Run ``fn``; turn any failure into one red line and exit code 1."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Libraries' deprecation notices are for their developers, not for our users.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        try:
            fn()
        except (CliError, ConfigError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2 if isinstance(exc, (CliError, ConfigError)) else 1) from None
        except LakeBusy as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_LAKE_BUSY) from None
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            if debug:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            console.print(f"[red]error:[/red] {type(exc).__name__}: {first[:300]}", highlight=False)
            raise typer.Exit(1) from None
        finally:
            shown = set()
            for w in caught:
                msg = str(w.message)
                if msg not in shown and not issubclass(w.category, (FutureWarning, DeprecationWarning)):
                    shown.add(msg)
                    console.print(f"[yellow]warning:[/yellow] {msg}", highlight=False)


def _generation_table(summary) -> Table:
    t = Table(title="Generated landing zone")
    t.add_column("source")
    t.add_column("rows", justify="right")
    t.add_column("files", justify="right")
    for name, rows in summary.rows.items():
        t.add_row(name, f"{rows:,}", f"{summary.files.get(name, 0):,}")
    return t


def do_generate(customers: int, days: int, as_of: date, seed: int, landing: Path, dirty_rate: float,
                overwrite: bool = False, world: str = "demo") -> None:
    from c360.synth import generate as synth_generate

    with _progress() as progress:
        summary = synth_generate(customers=customers, days=days, as_of=as_of, seed=seed, landing=landing,
                                 dirty_rate=dirty_rate, progress=_Bars(progress), overwrite=overwrite,
                                 world=world)
    out.print(_generation_table(summary))
    defects = {k: v for k, v in (summary.defects or {}).items() if v}
    if defects:
        out.print("injected defects: " + ", ".join(f"{k}={v}" for k, v in sorted(defects.items())))


def do_follow(landing: Path, crm_export: Path, lift: float, follow_days: int, overwrite: bool = False,
              expected: dict | None = None) -> None:
    from c360.synth.contact import follow

    info = follow(landing, crm_export, lift, follow_days, overwrite=overwrite, expected=expected)
    out.print(f"contacted {info['contacted_customers']:,} customers ({info['contacted_pairs']:,} products, "
              f"{info['lifted_pairs']:,} lifted by {info['lift']:g}); delivered {info['contact_date']} to "
              f"{info['delivered_through']}; truth in {landing / '_meta' / 'truth' / 'crm'}")


def _results_tables(results) -> list[Table]:
    tables = []
    steps = Table(title="Pipeline run")
    steps.add_column("step")
    steps.add_column("status")
    steps.add_column("seconds", justify="right")
    for r in results:
        steps.add_row(r.step, r.status, f"{r.duration_s:.1f}")
    tables.append(steps)
    for r in results:
        if r.step == "ingest":
            t = Table(title="Ingestion")
            for col in ("source", "files new", "skipped", "duplicate", "files quarantined",
                        "rows read", "rows loaded", "rows quarantined", "left for next run", "entries not read"):
                t.add_column(col, justify="left" if col == "source" else "right")
            for name, m in r.metrics.items():
                t.add_row(name, *(f"{m.get(k, 0):,}" for k in ("files_new", "files_skipped", "files_duplicate",
                                                               "files_quarantined", "rows_read", "rows_loaded",
                                                               "rows_quarantined", "files_deferred",
                                                               "entries_not_read")))
            tables.append(t)
            issues = [(name, i) for name, m in r.metrics.items() for i in m.get("issues") or []]
            if issues:
                n = Table(title="Landing entries not read",
                          caption="new this run, and files left for the next run; all in ops/landing_issues")
                for col in ("source", "path", "kind", "reason"):
                    n.add_column(col)
                for name, i in issues:
                    n.add_row(name, i["path"], i["kind"], i["reason"])
                tables.append(n)
            reasons: dict[str, int] = {}
            for m in r.metrics.values():
                for k, v in m["reasons"].items():
                    reasons[k] = reasons.get(k, 0) + v
            if reasons:
                q = Table(title="Quarantine reasons")
                q.add_column("reason")
                q.add_column("count", justify="right")
                for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]):
                    q.add_row(k, f"{v:,}")
                tables.append(q)
        elif r.step == "silver":
            t = Table(title="Silver tables")
            t.add_column("table")
            t.add_column("rows", justify="right")
            for name, n in r.metrics.get("rows", {}).items():
                t.add_row(f"silver/{name}", f"{n:,}")
            tables.append(t)
        elif r.step.startswith("dq_") and "by_suite" in r.metrics:
            tables.extend(_dq_tables(r.metrics))
        elif r.step == "segments":
            tables.append(_segments_table(r.metrics))
        elif r.step == "kpis":
            notes = ([f"no source for: {', '.join(r.metrics['skipped'])}"] if r.metrics.get("skipped") else []) + \
                ([f"report: {r.metrics['report']}"] if r.metrics.get("report") else [])
            t = Table(title="Experience, service and complaint KPIs", caption=" · ".join(notes) or None)
            t.add_column("table")
            t.add_column("rows", justify="right")
            for name, n in (r.metrics.get("rows") or {}).items():
                t.add_row(f"gold/{name}", f"{n:,}")
            tables.append(t)
        elif r.step == "train":
            tables.append(_train_table(r.metrics))
            if r.metrics.get("skipped_models"):
                tables.append(_skipped_models_table(r.metrics))
        elif r.step == "score":
            tables.extend(_score_tables(r.metrics))
        elif r.step == "export":
            tables.append(_export_table(r.metrics))
        elif r.step == "recovery":
            tables.append(_recovery_table(r.metrics))
    return tables


def _train_table(m: dict) -> Table:
    """One row per trained model: OOT metric vs baselines, version, gate outcome, aliases."""
    def f(v) -> str:
        return "-" if v is None else f"{v:.4f}"

    t = Table(title="Model training (out-of-time evaluation)")
    for col in ("model", "kind", "OOT snapshot", "metric", "new version", "champion before", "baseline",
                "segment baseline", "version", "gate", "aliases"):
        t.add_column(col, justify="left" if col in ("model", "kind", "gate", "aliases", "OOT snapshot") else "right")
    n = m.get("next_best_product")
    if n and "skipped" not in n:
        kinds = ", ".join(f"{k} {v:.4f}" for k, v in (n.get("map_at_7_by_kind") or {}).items())
        t.add_row(n["model"], f"{n['kind']} ({kinds})", n["oot_snapshot"], "map_at_7", f(n["map_at_7"]),
                  f(n.get("previous_champion_map_at_7")), f(n.get("baseline_popularity_map_at_7")),
                  f"{f(n.get('baseline_segment_popularity_map_at_7'))} ({n.get('segment_baseline_grouping')})",
                  n["version"], "champion" if n["promoted"] else "challenger",
                  ", ".join(f"{a}=v{v}" for a, v in sorted((n.get("aliases") or {}).items())))
        if n.get("calibration_ece") is not None:
            t.caption = (f"{n['model']}: map_at_3 {f(n.get('map_at_3'))}; score calibrated on the OOT snapshot "
                         f"({n.get('calibration_breakpoints')} breakpoints), ECE {f(n['calibration_ece'])} "
                         f"cross-fitted, {f(n.get('calibration_ece_in_sample'))} in sample")
    a = m.get("attrition")
    if a and "skipped" not in a:
        t.add_row(a["model"], a["kind"], a["oot_snapshot"], "auc", f(a["auc"]), f(a.get("previous_champion_auc")),
                  "0.5000", f"Brier {f(a.get('brier_score'))}, ECE {f(a.get('expected_calibration_error'))}",
                  a["version"], "champion" if a["promoted"] else "challenger",
                  ", ".join(f"{k}=v{v}" for k, v in sorted((a.get("aliases") or {}).items())))
    return t


def _skipped_models_table(m: dict) -> Table:
    """Models the train step skipped: reason code and sentence (also in ops/run_log and MLflow)."""
    t = Table(title="Models not trained (the run goes on; scoring uses the champions there are)")
    for col in ("model", "reason", "why"):
        t.add_column(col)
    for task in ("next_best_product", "attrition"):
        r = m.get(task) or {}
        if "skipped" in r:
            t.add_row(r["model"], r["skipped"], r["reason"])
    return t


def _dq_tables(m: dict) -> list[Table]:
    """Data quality step: expectations per table, then warnings / tolerated / skipped checks."""
    t = Table(title=f"Data quality: {m['layer']}", caption=f"Data Docs: {m['data_docs']}" if m.get("data_docs") else None)
    t.add_column("table")
    t.add_column("expectations", justify="right")
    t.add_column("failed", justify="right")
    for name, s in m["by_suite"].items():
        t.add_row(name, f"{s['expectations']:,}", f"[yellow]{s['failed']}[/yellow]" if s["failed"] else "0")
    out = [t]
    notes = [("warning", "yellow", x) for x in m.get("warnings", [])] + \
        [("tolerated", "cyan", x) for x in m.get("tolerated", [])] + [("skipped", "dim", x) for x in m.get("skipped", [])]
    # deliveries accepted although not on time (missing and empty ones are warnings or failures)
    for r in (m.get("completeness") or {}).get("not_on_time", []):
        if r["reason"] == "late":
            notes.append(("late delivery", "cyan", f"{r['source']} {r['expected']}: ingested after the run for its date"))
        elif r["reason"] == "known_missing":
            notes.append(("known missing", "dim", f"{r['source']} {r['expected']}: {r.get('why')}"))
    if (m.get("data_docs_offline") or "").startswith("no"):
        notes.append(("Data Docs need internet", "yellow", m["data_docs_offline"][4:]))
    if notes:
        n = Table(title=f"Data quality notes: {m['layer']}")
        n.add_column("kind")
        n.add_column("expectation")
        for kind, colour, text in notes:
            n.add_row(f"[{colour}]{kind}[/{colour}]", text)
        out.append(n)
    return out


def _segments_table(m: dict) -> Table:
    k = f"k={m.get('k')}, silhouette {m.get('silhouette', 0):.3f}"
    t = Table(title=f"Segments and personas ({m.get('customers', 0):,} customers, {k})")
    t.add_column("dimension")
    t.add_column("segment")
    t.add_column("customers", justify="right")
    new = set(m.get("new_personas") or [])
    for pid, n in (m.get("personas") or {}).items():
        t.add_row("persona", f"{pid}{' (new)' if pid in new else ''}", f"{n:,}")
    for dim in ("value_tier", "lifecycle_stage"):
        for seg, n in sorted((m.get(dim) or {}).items(), key=lambda kv: -kv[1]):
            t.add_row(dim, seg, f"{n:,}")
    if m.get("report"):
        t.caption = f"report: {m['report']}"
    return t


def _score_tables(m: dict) -> list[Table]:
    if "skipped" not in m:
        return _score_detail_tables(m)
    s = Table(title="Scoring: recommendations")  # no next-best-product champion: the reason
    s.add_column("")
    s.add_column("value")
    s.add_row("skipped", str(m["skipped"]))
    return [s, *_attrition_tables(m)]


def _score_detail_tables(m: dict) -> list[Table]:
    notes = [f"{label}: {m[key]}" for label, key in (("score", "calibration"), ("ranking", "ranking"))
             if m.get(key)]
    t = Table(title=f"Scoring ({m.get('model')} v{m.get('model_version')}, top {m.get('top_n')})",
              caption="\n".join(notes) or None)
    t.add_column("")
    t.add_column("count", justify="right")
    for label, key in (("customers", "customers"), ("candidates", "candidates"), ("eligible", "eligible"),
                       ("recommendations", "recommendations"),
                       ("customers with a recommendation", "customers_with_recommendation"),
                       ("customers without", "customers_without_recommendation"),
                       ("with the generic reason only", "recommendations_with_generic_reason")):
        t.add_row(label, f"{m.get(key, 0):,}")
    x = Table(title="Excluded (first failing rule)")
    x.add_column("reason")
    x.add_column("count", justify="right")
    x.add_column("failing the rule", justify="right")
    for reason, n in m.get("excluded_by_reason", {}).items():
        x.add_row(reason, f"{n:,}", f"{m.get('failing_by_rule', {}).get(reason, 0):,}")
    return [t, x, *_attrition_tables(m)]


def _attrition_tables(m: dict) -> list[Table]:
    out = []
    a = m.get("attrition") or {}
    if a:
        at = Table(title="Attrition risk")
        at.add_column("")
        at.add_column("value", justify="right")
        if "skipped" in a:
            at.add_row("skipped", str(a["skipped"]))
        else:
            at.add_row("model version", str(a.get("model_version")))
            for band, n in a.get("by_band", {}).items():
                at.add_row(f"{band} risk", f"{n:,}")
        out.append(at)
    return out


def _recovery_table(m: dict) -> Table:
    """The service-recovery list: customers per reason, the churn warning or why it is missing."""
    t = Table(title="Service recovery (CRM service queue)")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("folder", str(m.get("path")))
    t.add_row("customers listed", f"{m.get('rows', 0):,}")
    for k, v in (m.get("by_reason") or {}).items():
        t.add_row(f"reason: {k}", f"{v:,}")
    a = m.get("attrition") or {}
    t.add_row("churn warning",
              f"skipped: {a['skipped']}" if "skipped" in a else f"model version {a.get('model_version')}")
    for k, v in (m.get("changes") or {}).items():
        t.add_row(f"changes: {k}", f"{v:,}")
    o = m.get("outcomes") or {}
    t.add_row("earlier listings: listed / improved", f"{o.get('listed', 0):,} / {o.get('improved', 0):,}")
    return t


def _export_table(m: dict) -> Table:
    t = Table(title="CRM export")
    t.add_column("")
    t.add_column("value", justify="right")
    if "skipped" in m:  # nothing scored for the date: no drop
        t.add_row("skipped", str(m["skipped"]))
        return t
    t.add_row("folder", str(m.get("path")))
    t.add_row("rows exported", f"{m.get('rows', 0):,}")
    t.add_row("left out (no marketing consent)", f"{m.get('excluded_no_consent', 0):,}")
    t.add_row("previous export", str(m.get("previous_export") or "none"))
    for k, v in (m.get("changes") or {}).items():
        t.add_row(f"changes: {k}", f"{v:,}")
    o = m.get("outcomes") or {}
    t.add_row("past offers matched / converted", f"{o.get('offers_sent', 0):,} / {o.get('converted', 0):,}")
    return t


def do_run(settings: Settings, as_of: date, steps: Optional[str]) -> None:
    import uuid

    from c360 import lock
    from c360.engine import spark_session
    from jobs.pipeline import parse_steps, run_step

    names = parse_steps(steps)
    if not storage.is_dir(settings.landing) and "ingest" in names:
        raise CliError(f"landing zone {settings.landing} does not exist (run `c360 generate` first?)")
    if "silver" in names:
        from c360.privacy import pii_key_ref

        pii_key_ref(settings)  # no PII key, no run: one line before anything starts (ConfigError)
    results = []
    run_id = uuid.uuid4().hex[:12]
    # the lake's lock across all steps, taken before the engine starts: a busy lake fails at once
    with lock.for_settings(settings, run_id=run_id, step=",".join(names), as_of=as_of), \
            spark_session(settings) as engine, _progress() as progress:
        bars = _Bars(progress)
        overall = progress.add_task("pipeline", total=len(names))
        for i, step in enumerate(names):
            progress.update(overall, description=f"pipeline: {step}", completed=i)
            results.append(run_step(engine.spark, settings, step, as_of, run_id=run_id, progress=bars))
        progress.update(overall, completed=len(names), description="pipeline")
    for t in _results_tables(results):
        out.print(t)
    out.print(f"lake: {settings.lake}")


@app.command()
def generate(
    customers: int = typer.Option(..., help="number of customers"),
    days: int = typer.Option(..., help="days of history ending at --as-of"),
    as_of: str = typer.Option(..., "--as-of", help="last day of history, YYYY-MM-DD"),
    seed: int = typer.Option(42, help="random seed (same seed, same files)"),
    landing: Optional[str] = typer.Option(None, help="landing zone [env C360_LANDING, default ./landing]"),
    dirty_rate: float = typer.Option(0.0, "--dirty-rate", help="share of rows with injected defects (0-0.5)"),
    overwrite: bool = typer.Option(False, help="replace what is already in the landing zone"),
    world: str = typer.Option("demo", help="simulated bank: demo, sequence or digital (the last two also "
                                            "write the truth after --as-of under _meta/truth/)"),
    crm_export: Optional[str] = typer.Option(
        None, "--crm-export", help="play the bank's CRM: contact the customers of this CRM export folder "
                                   "(<lake>/marketing/exports/crm/<as_of>) of the bank already generated in the "
                                   "landing zone, then deliver --follow-days days after its as_of (truth under "
                                   "_meta/truth/crm/); the other generation options are read from the landing zone"),
    lift: float = typer.Option(0.0, "--lift", help="with --crm-export: added to a contacted pair's probability of "
                                                   "adopting the product within 30 days (0-1)"),
    follow_days: int = typer.Option(30, "--follow-days", help="with --crm-export: days delivered after as_of (1-30)"),
    debug: bool = typer.Option(False, help="show tracebacks"),
) -> None:
    """Write a synthetic bank's deliveries into the landing zone (or, with --crm-export, the
    days after its as_of once the CRM has contacted the exported customers)."""
    def go():
        s = _settings(landing=landing)
        if crm_export is not None:
            do_follow(storage.local_only(s.landing, "c360 generate (writes a local landing zone)"), Path(crm_export),
                      lift, follow_days, overwrite, {"customers": customers, "days": days, "seed": seed, "world": world,
                                                     "as_of": _parse_date(as_of, "--as-of")})
            return
        do_generate(customers, days, _parse_date(as_of, "--as-of"), seed,
                    storage.local_only(s.landing, "c360 generate (writes a local landing zone)"), dirty_rate, overwrite,
                    world)
    _run_guarded(go, debug)


@app.command()
def run(
    as_of: str = typer.Option(..., "--as-of", help="business date of the run, YYYY-MM-DD"),
    landing: Optional[str] = typer.Option(None, help="landing zone, a folder or s3://bucket/prefix [env C360_LANDING, default ./landing]"),
    lake: Optional[str] = typer.Option(None, help="lake root, a folder or s3://bucket/prefix [env C360_LAKE, default ./lake]"),
    steps: Optional[str] = typer.Option(None, help="comma-separated steps (default: all, in order)"),
    debug: bool = typer.Option(False, help="show tracebacks"),
) -> None:
    """Run pipeline steps for one business date."""
    def go():
        do_run(_settings(landing=landing, lake=lake), _parse_date(as_of, "--as-of"), steps)
    _run_guarded(go, debug)


@app.command()
def demo(
    debug: bool = typer.Option(False, help="show tracebacks"),
    customers: int = typer.Option(DEMO_CUSTOMERS, help="number of customers"),
) -> None:
    """Generate a 10,000-customer bank (13 months to 2026-06-30) and run every step.

    Runs in development mode (the public built-in PII key, unless a key is given) unless
    ``env`` is set (``C360_ENV`` or ``conf/``)."""
    def go():
        s = _settings()
        if "env" not in s.model_fields_set:  # the demo asks for development mode, and says so
            s = s.model_copy(update={"env": "development"})
            console.print("demo: development mode (C360_ENV=development): PII tokens use the public built-in "
                          f"key unless ${s.privacy.key_env} or privacy.key_file gives one", highlight=False)
        # Deterministic: generating again writes the same files, which ingestion then skips.
        do_generate(customers, DEMO_DAYS, DEMO_AS_OF, DEMO_SEED, storage.local_only(s.landing, "c360 demo"),
                    DEMO_DIRTY_RATE, overwrite=True)
        do_run(s, DEMO_AS_OF, None)
    _run_guarded(go, debug)


def _maintain_table(summary: dict) -> Table:
    t = Table(title=f"Maintenance (vacuum retention {summary['retention_hours']} h)",
              caption=f"{summary['files_before']:,} -> {summary['files_after']:,} files, "
                      f"{summary['vacuumed_files']:,} deleted, {summary['seconds']:.1f} s")
    t.add_column("table", no_wrap=True)
    for col in ("files", "after", "avg MB", "after", "rows", "vacuumed", "s"):
        t.add_column(col, justify="right")
    for name, r in summary["tables"].items():
        if "error" in r:
            t.add_row(name, f"[red]{r['error'][:80]}[/red]", "", "", "", "", "", "")
            continue
        t.add_row(name, f"{r['files_before']:,}", f"{r['files_after']:,}", f"{r['avg_file_mb_before']:.2f}",
                  f"{r['avg_file_mb_after']:.2f}", "-" if r["rows_after"] is None else f"{r['rows_after']:,}",
                  f"{r['vacuumed_files']:,}", f"{r['seconds']:.1f}")
    return t


@app.command()
def maintain(
    lake: Optional[str] = typer.Option(None, help="lake root, a folder or s3://bucket/prefix [env C360_LAKE, default ./lake]"),
    retention_hours: Optional[int] = typer.Option(
        None, "--retention-hours", help="vacuum retention (default: maintenance.vacuum_retention_hours)"),
    tables: Optional[str] = typer.Option(None, help="comma-separated tables or layer/ prefixes (default: all)"),
    debug: bool = typer.Option(False, help="show tracebacks"),
) -> None:
    """Compact small files and vacuum unreferenced ones in every Delta table of the lake."""
    def go():
        from c360.engine import spark_session
        from jobs import maintain as job

        s = _settings(lake=lake)
        if not storage.is_dir(s.lake):
            raise CliError(f"lake {s.lake} does not exist")
        only = [t.strip() for t in tables.split(",") if t.strip()] if tables else None
        with spark_session(s) as engine, _progress() as progress:  # the engine only records the audit row
            summary = job.run(s, engine.spark, tables=only, retention_hours=retention_hours,
                              progress=_Bars(progress))
        out.print(_maintain_table(summary))
        if summary["failed"]:
            raise CliError(f"maintenance failed for {', '.join(summary['failed'])}")
    _run_guarded(go, debug)


def _erase_tables(res) -> list[Table]:
    t = Table(title=f"Erasure {res.request_id}")
    # table names are never cut short, whatever the terminal's width (the other columns give way)
    longest = max((len(e.table) for e in res.tables), default=5)
    for col in ("table", "action", "rows", "version before", "version after"):
        t.add_column(col, justify="left" if col in ("table", "action") else "right",
                     **({"no_wrap": True, "min_width": longest} if col == "table" else {}))
    for e in res.tables:
        t.add_row(e.table, e.action, f"{e.rows:,}", str(e.version_before), str(e.version_after))
    tables = [t]
    if res.exports or res.delivered:
        x = Table(title="CRM exports holding the customer")
        x.add_column("folder", no_wrap=True)
        x.add_column("status", no_wrap=True)
        x.add_column("rows", justify="right")
        for e in res.exports + res.delivered:
            status = "[yellow]delivered[/yellow]" if e.delivered else "rewritten"
            x.add_row(e.folder, status, f"{max(e.rows.values()):,}")
        tables.append(x)
    s = Table(title="Purge")
    s.add_column("")
    s.add_column("value", justify="right")
    s.add_row("retention (hours)", str(res.retention_hours))
    s.add_row("tables vacuumed and checkpointed", f"{res.tables_purged:,}")
    s.add_row("data files deleted", f"{res.files_vacuumed:,}")
    s.add_row("log files expired", f"{res.log_files_expired:,}")
    if res.redacted_files:
        s.add_row("other files redacted", ", ".join(res.redacted_files))
    if res.mlflow_files:
        s.add_row("MLflow files naming the customer (not modified)", ", ".join(res.mlflow_files))
    tables.append(s)
    return tables


def do_erase(settings: Settings, customer_id: str, retention_hours: Optional[int]) -> None:
    import uuid

    from c360 import lock
    from c360.engine import spark_session
    from jobs import erase as erase_job

    try:
        cid = erase_job.check_customer_id(customer_id)
        hours = erase_job.check_retention(settings.privacy.erasure_retention_hours if retention_hours is None
                                          else retention_hours)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if not storage.is_dir(settings.lake):
        raise CliError(f"lake {settings.lake} does not exist")
    request_id = str(uuid.uuid4())
    out.print(f"erasure request id: {request_id} (file it with the request; the audit log knows the run by it)")
    with lock.for_settings(settings, run_id=request_id, step="erase"), spark_session(settings) as engine, \
            _progress() as progress:
        res = erase_job.run(engine.spark, settings, cid, retention_hours=hours, request_id=request_id,
                            progress=_Bars(progress))
    for t in _erase_tables(res):
        out.print(t)
    if res.delivered:
        out.print("[yellow]delivered exports were not modified (the recipient's copy): the recipient must erase "
                  f"the customer from {', '.join(e.folder for e in res.delivered)}[/yellow]")
    if not res.customer_found:
        out.print(f"[yellow]customer {cid} was found in no table, undelivered export or report of {settings.lake}: nothing "
                  "removed[/yellow] (old files past the retention were still purged; audit entry recorded)")
    elif res.pending_until:
        out.print(f"{res.rows_removed:,} rows removed. Old files and log entries holding them stay until "
                  f"{res.pending_until} UTC (retention {hours} h); run `c360 erase` again after that to delete them.")
    else:
        out.print(f"{res.rows_removed:,} rows removed; the old files and log entries holding them are deleted.")


@app.command()
def erase(
    customer_id: str = typer.Option(..., "--customer-id", help="the customer to erase (right to erasure)"),
    lake: Optional[str] = typer.Option(None, help="lake root, a folder or s3://bucket/prefix [env C360_LAKE, default ./lake]"),
    retention_hours: Optional[int] = typer.Option(
        None, "--retention-hours",
        help="delete old files and log entries older than this many hours; 0: at once "
             "[default privacy.erasure_retention_hours]"),
    debug: bool = typer.Option(False, help="show tracebacks"),
) -> None:
    """Erase one customer from every table, undelivered CRM export and report of the lake."""
    def go():
        do_erase(_settings(lake=lake), customer_id, retention_hours)
    _run_guarded(go, debug)


CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "features" / "CATALOGUE.md"


@app.command()
def catalogue(
    output: Path = typer.Option(CATALOGUE_PATH, help="where to write the markdown catalogue"),
    debug: bool = typer.Option(False, help="show tracebacks"),
) -> None:
    """Write the customer 360 feature catalogue generated from the feature declarations."""
    def go():
        from features.registry import REGISTRY, catalogue_markdown

        Path(output).write_text(catalogue_markdown(), encoding="utf-8")
        out.print(f"{len(REGISTRY)} features written to {output}")
    _run_guarded(go, debug)


def do_evaluate(settings: Settings, as_of: date) -> dict:
    from c360.engine import spark_session
    from jobs import evaluate as job

    job.read_world(settings.landing, as_of)  # no truth: one line, before the engine starts
    with spark_session(settings) as engine:
        result = job.run(engine.spark, settings, as_of)
    t = Table(title=f"Recommendations against the truth (world {result['world']}, as_of {result['as_of']})",
              caption=f"{result['customers']:,} customers, {result['customers_with_positive']:,} with an adoption "
                      f"in {result['horizon_days']} days ({result['positives']:,} adoptions)")
    for h in ("method", "MAP@7", "MAP@3", "share of oracle", "vs popularity"):
        t.add_column(h, justify="left" if h == "method" else "right")
    for row in job.table_rows(result):
        t.add_row(*row)
    out.print(t)
    out.print(f"report: {result['json']} and {result['html']}")
    return result


@app.command()
def evaluate(
    as_of: str = typer.Option(..., "--as-of", help="business date of the recommendations, YYYY-MM-DD"),
    landing: Optional[Path] = typer.Option(None, help="landing zone with _meta/truth [env C360_LANDING]"),
    lake: Optional[Path] = typer.Option(None, help="lake root [env C360_LAKE, default ./lake]"),
    debug: bool = typer.Option(False, help="show tracebacks"),
) -> None:
    """Score gold/recommendations against a simulated bank's truth (MAP@7/@3 of the model,
    popularity and the oracle)."""
    def go():
        do_evaluate(_settings(landing=landing, lake=lake), _parse_date(as_of, "--as-of"))
    _run_guarded(go, debug)


cluster_app = typer.Typer(no_args_is_help=True, help="A local Spark standalone cluster with Spark Connect "
                          "and Delta Lake (c360/cluster.py).")
app.add_typer(cluster_app, name="cluster")
CLUSTER_DIR_OPTION = typer.Option(None, "--dir", help="pid files, logs and state [default ./.cluster]")


@cluster_app.command("up")
def cluster_up(directory: Optional[Path] = CLUSTER_DIR_OPTION,
               s3: bool = typer.Option(False, "--s3", help="add S3A (hadoop-aws) for lakes on s3://; endpoint "
                                       "and region from $AWS_ENDPOINT_URL and $AWS_REGION, keys from the environment"),
               debug: bool = typer.Option(False)) -> None:
    """Start a master, two workers and a Spark Connect server; print SPARK_REMOTE."""
    def go():
        from c360 import cluster

        extra = dict(packages=(cluster.HADOOP_AWS_PACKAGE,),
                     conf=cluster.s3a_conf(os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_REGION"))) \
            if s3 else {}
        cluster.up(directory or cluster.DEFAULT_DIR, register_atexit=False, say=out.print, **extra)
    _run_guarded(go, debug)


@cluster_app.command("down")
def cluster_down(directory: Optional[Path] = CLUSTER_DIR_OPTION, debug: bool = typer.Option(False)) -> None:
    """Stop every process `c360 cluster up` started."""
    def go():
        from c360 import cluster

        cluster.down(directory or cluster.DEFAULT_DIR, say=out.print)
    _run_guarded(go, debug)


@cluster_app.command("status")
def cluster_status(directory: Optional[Path] = CLUSTER_DIR_OPTION, debug: bool = typer.Option(False)) -> None:
    """Print the cluster's URLs and which of its processes are alive (JSON)."""
    def go():
        import json

        from c360 import cluster

        out.print_json(json.dumps(cluster.status(directory or cluster.DEFAULT_DIR)))
    _run_guarded(go, debug)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
