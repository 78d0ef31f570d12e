"""Tests of the synthetic bank generator (c360.synth).

Two banks are generated once per session (a clean one large enough for behavioural
signals, a small dirty one) and shared by the tests; determinism tests generate tiny
banks of their own.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from c360.contract import (
    BOOL,
    DATE,
    DECIMAL,
    INT,
    SOURCES,
    SURVEY_SCORE_RANGES,
    TIMESTAMP,
)
from c360.synth import generate
from c360.synth.vocab import COMMENTS

pytestmark = pytest.mark.unit

AS_OF = dt.date(2026, 6, 30)
EXT = {"customers": ".csv", "product_catalog": ".csv", "holdings": ".parquet", "transactions": ".csv.gz",
       "events": ".jsonl", "interactions": ".csv", "feedback": ".csv", "complaints": ".csv",
       "campaign_responses": ".csv"}
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
MONEY_RE = re.compile(r"^-?\d+\.\d{2}$")


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def clean(tmp_path_factory):
    landing = tmp_path_factory.mktemp("clean")
    summary = generate(2500, 240, AS_OF, 11, landing)
    return landing, summary


@pytest.fixture(scope="session")
def dirty(tmp_path_factory):
    landing = tmp_path_factory.mktemp("dirty")
    summary = generate(400, 60, AS_OF, 5, landing, dirty_rate=0.1)
    return landing, summary


def _read_table(path: Path) -> pa.Table:
    """One landing file as a table of strings (null = empty field / JSON null)."""
    name = path.name
    if name.endswith(".parquet"):
        tab = pq.read_table(path)
    elif name.endswith(".jsonl"):  # the json module, so that no type is inferred
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        if not rows:
            return None
        tab = pa.table({k: pa.array([None if r[k] is None else str(r[k]) for r in rows], pa.string())
                        for k in rows[0]})
    else:
        names = SOURCES[path.parent.parent.name].column_names
        tab = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in names}, strings_can_be_null=True))
    return pa.table([c.cast(pa.string()) for c in tab.columns], names=tab.column_names)


def _read_file(path: Path) -> pd.DataFrame:
    df = _read_table(path).to_pandas()
    return df.astype(object).where(df.notna(), None)


@lru_cache(maxsize=64)
def load(landing: Path, source: str, suffixes: bool = False) -> pd.DataFrame:
    """All rows of a source (main daily files; with suffixes=True also _late/_resend files)."""
    tables = []
    for f in sorted((landing / source).glob("*/*")):
        if not suffixes and re.search(r"_(late|resend|redelivery)\.", f.name):
            continue
        tab = _read_table(f)
        if tab is None:
            continue
        n = tab.num_rows
        tab = tab.append_column("_folder", pa.array([f.parent.name] * n, pa.string()))
        tables.append(tab.append_column("_file", pa.array([f.name] * n, pa.string())))
    df = pa.concat_tables(tables).to_pandas()
    return df.astype(object).where(df.notna(), None)


def checksums(landing: Path) -> dict[str, str]:
    return {str(p.relative_to(landing)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(landing.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------- layout
def test_layout_folders_and_file_names(clean):
    landing, summary = clean
    start = AS_OF - dt.timedelta(days=239)
    assert summary.start_date == start.isoformat()
    for source in SOURCES:
        folders = sorted(p.name for p in (landing / source).iterdir())
        assert folders, source
        days = [dt.date.fromisoformat(f) for f in folders]
        assert min(days) >= start and max(days) <= AS_OF, source
        for f in (landing / source).glob("*/*"):
            assert f.name == f"{source}_{f.parent.name.replace('-', '')}{EXT[source]}", f
    # daily sources have a drop every day; holdings at day 0, each month end and as_of
    assert len(list((landing / "transactions").iterdir())) == 240
    snaps = sorted(p.name for p in (landing / "holdings").iterdir())
    month_ends = [d.isoformat() for d in pd.date_range(start, AS_OF, freq="ME").date]
    assert snaps == [start.isoformat()] + month_ends and snaps[-1] == AS_OF.isoformat()
    assert sorted(p.name for p in (landing / "_meta").iterdir()) == [
        "adoptions.parquet", "customer_truth.parquet", "generation.json"]


def test_headers_equal_contract_column_order(clean):
    landing, _ = clean
    for source, spec in SOURCES.items():
        for f in sorted((landing / source).glob("*/*"))[:5]:
            if f.name.endswith(".parquet"):
                cols = pq.read_schema(f).names
            elif f.name.endswith(".jsonl"):
                cols = list(json.loads(f.read_text(encoding="utf-8").splitlines()[0]))
            else:
                opener = gzip.open if f.name.endswith(".gz") else open
                with opener(f, "rt", encoding="utf-8") as fh:
                    cols = [c.strip('"') for c in fh.readline().rstrip("\n").split(",")]
            assert cols == spec.column_names, (source, f.name)


# -------------------------------------------------------------- determinism
def test_same_seed_gives_identical_files_different_seed_does_not(tmp_path):
    a = generate(150, 40, AS_OF, 3, tmp_path / "a", dirty_rate=0.05)
    b = generate(150, 40, AS_OF, 3, tmp_path / "b", dirty_rate=0.05, workers=2)  # parallel: same bytes
    generate(150, 40, AS_OF, 4, tmp_path / "c", dirty_rate=0.05)
    ca, cb, cc = checksums(tmp_path / "a"), checksums(tmp_path / "b"), checksums(tmp_path / "c")
    assert len(ca) > 100
    assert ca == cb
    assert a.to_dict() == b.to_dict()
    assert ca != cc
    same = sum(ca.get(k) == v for k, v in cc.items())
    assert same <= 2  # at most the two catalogue files are seed-independent


def test_bad_arguments_are_refused(tmp_path):
    for kwargs in ({"customers": 0}, {"days": 0}, {"dirty_rate": -0.1}, {"dirty_rate": 0.6},
                   {"customers": 1.5}):
        args = dict(customers=10, days=5, as_of=AS_OF, seed=1, landing=tmp_path / "x")
        args.update(kwargs)
        with pytest.raises(ValueError):
            generate(**args)
    generate(10, 5, AS_OF, 1, tmp_path / "y")
    with pytest.raises(ValueError, match="already contains"):
        generate(10, 5, AS_OF, 1, tmp_path / "y")
    generate(10, 5, AS_OF, 1, tmp_path / "y", overwrite=True)


# ------------------------------------------------------------- clean values
def _check_column(values: pd.Series, col, source: str) -> None:
    v = values.dropna()
    if col.type == TIMESTAMP:
        assert v.str.match(TS_RE).all(), (source, col.name)
        pd.to_datetime(v, format="%Y-%m-%dT%H:%M:%S")  # raises on 2026-02-30 etc.
    elif col.type == DATE:
        pd.to_datetime(v, format="%Y-%m-%d")
    elif col.type == DECIMAL:
        assert v.str.match(MONEY_RE).all(), (source, col.name)
    elif col.type == INT:
        assert v.str.match(r"^\d+$").all(), (source, col.name)
    elif col.type == BOOL:
        assert set(v) <= {"true", "false"}, (source, col.name)
    if col.enum:
        assert set(v) <= set(col.enum), (source, col.name, set(v) - set(col.enum))
    if col.min_value is not None and len(v):
        x = v.astype(float)
        assert (x > col.min_value).all() if col.min_exclusive else (x >= col.min_value).all(), (source, col.name)
    if col.max_value is not None and len(v):
        assert (v.astype(float) <= col.max_value).all(), (source, col.name)


def test_clean_mode_rows_are_all_valid(clean):
    landing, summary = clean
    assert all(v == 0 for v in summary.defects.values())
    assert summary.file_defects == [] and summary.variants == {}
    for source, spec in SOURCES.items():
        df = load(landing, source)
        assert len(df) == summary.rows[source] == summary.rows_in_files[source], source
        for col in spec.columns:
            if col.required:
                assert df[col.name].notna().all(), (source, col.name)
            _check_column(df[col.name], col, source)
        if spec.key and source not in ("complaints", "customers", "product_catalog"):
            assert not df.duplicated(list(spec.key)).any(), source
    tx = load(landing, "transactions")
    assert (tx["amount"].astype(float) > 0).all()
    fb = load(landing, "feedback")
    for survey, (lo, hi) in SURVEY_SCORE_RANGES.items():
        s = fb.loc[fb.survey_type == survey, "score"].astype(int)
        assert len(s) and s.between(lo, hi).all(), survey


def test_referential_integrity(clean):
    landing, _ = clean
    cust = set(load(landing, "customers").customer_id)
    hold = load(landing, "holdings")
    tx = load(landing, "transactions")
    assert set(tx.customer_id) <= cust
    assert set(tx.account_id) <= set(hold.account_id)
    acct_owner = dict(zip(hold.account_id, hold.customer_id))
    assert (tx.account_id.map(acct_owner) == tx.customer_id).all()
    assert set(hold.customer_id) <= cust
    for source in ("events", "interactions", "feedback", "complaints", "campaign_responses"):
        assert set(load(landing, source).customer_id.dropna()) <= cust, source
    products = set(load(landing, "product_catalog").product_code)
    assert set(hold.product_code) <= products
    assert set(load(landing, "events").product_code.dropna()) <= products
    fb = load(landing, "feedback")
    assert set(fb.interaction_id.dropna()) <= set(load(landing, "interactions").interaction_id)
    # everybody has a current account
    assert cust == set(hold.loc[hold.product_code == "CA001", "customer_id"])


def test_summary_json_and_truth_files(clean):
    landing, summary = clean
    meta = json.loads((landing / "_meta" / "generation.json").read_text(encoding="utf-8"))
    assert meta == json.loads(json.dumps(summary.to_dict()))
    assert meta["files_written"] == sum(len(list((landing / s).glob("*/*"))) for s in SOURCES)
    truth = pd.read_parquet(landing / "_meta" / "customer_truth.parquet")
    assert len(truth) == 2500 and truth.customer_id.is_unique
    assert set(truth.customer_id) == set(load(landing, "customers").customer_id)
    assert truth.latent_type.nunique() == 8
    share = truth.winding_down.mean()
    assert 0.03 < share < 0.15  # 240 days of an ~8-12%/year attrition
    consent = load(landing, "customers").drop_duplicates("customer_id").marketing_consent
    assert 0.72 < (consent == "true").mean() < 0.88
    risk = load(landing, "customers").drop_duplicates("customer_id").risk_tolerance
    assert 0.02 < risk.isna().mean() < 0.09


# -------------------------------------------------------------- realism
def test_latent_types_differ_in_age_and_income(clean):
    landing, _ = clean
    t = pd.read_parquet(landing / "_meta" / "customer_truth.parquet").groupby("latent_type")
    age, income = t.age_at_as_of.mean(), t.annual_income.median()
    assert age["senior_saver"] > age["young_digital_spender"] + 25
    assert age["student"] < 25
    assert income["affluent_investor"] > 3 * income["salaried_mass"]
    assert income["student"] < income["credit_seeker"]
    ev = load(landing, "events").dropna(subset=["customer_id"])
    per_cust = ev.groupby("customer_id").size()
    truth = pd.read_parquet(landing / "_meta" / "customer_truth.parquet").set_index("customer_id")
    ev_by_type = per_cust.reindex(truth.index, fill_value=0).groupby(truth.latent_type).mean()
    assert ev_by_type["young_digital_spender"] > 5 * ev_by_type["senior_saver"]


def test_volumes_per_customer_year(clean):
    landing, summary = clean
    years = 240 / 365
    assert 35 < summary.rows["transactions"] / 2500 / years < 70
    assert 12 < summary.rows["events"] / 2500 / years < 30


def test_churners_activity_falls_before_closing(clean):
    landing, _ = clean
    truth = pd.read_parquet(landing / "_meta" / "customer_truth.parquet")
    ch = truth[truth.churned & (pd.to_datetime(truth.churn_date) >= pd.Timestamp(AS_OF) - pd.Timedelta(days=140))]
    assert len(ch) >= 20
    tx = load(landing, "transactions")
    tx = tx[tx.customer_id.isin(ch.customer_id)]
    close = tx.customer_id.map(dict(zip(ch.customer_id, pd.to_datetime(ch.churn_date))))
    before = (close - pd.to_datetime(tx.txn_ts)).dt.days
    early = ((before >= 90) & (before < 120)).sum()
    late = ((before >= 0) & (before < 30)).sum()
    assert late < 0.6 * early
    # complaints raise the probability of leaving
    complained = truth.complaints > 0
    assert truth[complained].winding_down.mean() > 1.5 * truth[~complained].winding_down.mean()
    # no activity after closing, and every account is reported closed
    assert (before >= -4).all()
    hold = load(landing, "holdings")
    closed = hold[hold.customer_id.isin(truth[truth.churned].customer_id)]
    last = closed.sort_values("snapshot_date").groupby("account_id").tail(1)
    assert (last.status == "closed").all() and last.closed_date.notna().all()
    assert (last.closed_date >= last.opened_date).all()


def test_adoption_is_preceded_by_product_views(clean):
    landing, summary = clean
    start = pd.Timestamp(summary.start_date)
    hold = load(landing, "holdings")
    first = hold.drop_duplicates("account_id")
    new = first[pd.to_datetime(first.opened_date) > start + pd.Timedelta(days=20)]
    assert len(new) > 200
    ev = load(landing, "events")
    views = ev[ev.event_type == "product_view"].assign(ts=lambda d: pd.to_datetime(d.event_ts))

    def viewed_before(pairs: pd.DataFrame) -> float:
        m = pairs.merge(views, on=["customer_id", "product_code"])
        lag = (m.date - m.ts).dt.days
        hit = m[(lag >= 0) & (lag <= 14)][["customer_id", "product_code", "date"]].drop_duplicates()
        return len(hit) / len(pairs)

    adopt = new[["customer_id", "product_code"]].assign(date=pd.to_datetime(new.opened_date))
    rng = np.random.default_rng(0)
    holders = set(zip(first.customer_id, first.product_code))
    cands = pd.DataFrame({
        "customer_id": rng.choice(first.customer_id.unique(), 4000),
        "product_code": rng.choice(new.product_code.unique(), 4000),
        "date": start + pd.to_timedelta(rng.integers(20, 240, 4000), unit="D"),
    })
    control = cands[[(c, p) not in holders for c, p in zip(cands.customer_id, cands.product_code)]]
    p_adopt, p_control = viewed_before(adopt), viewed_before(control)
    assert p_adopt > 0.25
    assert p_adopt > 5 * p_control
    # a share of the adoptions goes through a digital application
    apps = ev[ev.event_type == "application_submit"]
    m = adopt.merge(apps, on=["customer_id", "product_code"])
    assert (pd.to_datetime(m.event_ts).dt.normalize() == m.date).sum() > 0.1 * len(adopt)


def test_campaign_conversions_match_adoptions(clean):
    landing, _ = clean
    cr = load(landing, "campaign_responses")
    assert set(cr.outcome) >= {"sent", "opened", "clicked", "converted", "declined"}
    conv = cr[cr.outcome == "converted"]
    assert len(conv) >= 10
    hold = load(landing, "holdings").drop_duplicates("account_id")
    m = conv.merge(hold, on=["customer_id", "product_code"])
    sent = pd.to_datetime(m.sent_at).dt.normalize()
    opened = pd.to_datetime(m.opened_date)
    ok = m[(opened >= sent) & (opened == pd.to_datetime(m.outcome_at).dt.normalize())]
    assert ok.offer_id.nunique() == conv.offer_id.nunique()
    # every funnel starts with "sent", and steps are in time order
    steps = cr.groupby("offer_id").outcome.apply(set)
    assert steps.map(lambda s: "sent" in s).all()
    assert (pd.to_datetime(cr.outcome_at) >= pd.to_datetime(cr.sent_at)).all()


def test_feedback_scores_follow_wait_times_and_comments_match(clean):
    landing, _ = clean
    fb = load(landing, "feedback")
    it = load(landing, "interactions")
    m = fb.merge(it[["interaction_id", "wait_seconds", "channel"]], on="interaction_id", suffixes=("", "_it"))
    lo = m.survey_type.map({k: v[0] for k, v in SURVEY_SCORE_RANGES.items()})
    hi = m.survey_type.map({k: v[1] for k, v in SURVEY_SCORE_RANGES.items()})
    m["norm"] = (m.score.astype(int) - lo) / (hi - lo)
    branch = m[m.channel_it == "branch"]
    wait = branch.wait_seconds.astype(int)
    long_, short = branch[wait > 1800].norm.mean(), branch[wait < 600].norm.mean()
    assert long_ < short - 0.1
    # comments in the customer's language, polarity following the score
    cust = load(landing, "customers").drop_duplicates("customer_id").set_index("customer_id")
    with_comment = fb.dropna(subset=["comment"])
    assert 0.2 < len(with_comment) / len(fb) < 0.7
    zh = with_comment.comment.str.contains(r"[\u4e00-\u9fff]")
    lang = with_comment.customer_id.map(cust.preferred_language)
    assert ((lang == "zh") == zh).all()
    norm = (with_comment.score.astype(int) - with_comment.survey_type.map({"nps": 0, "csat": 1, "ces": 1})) \
        / with_comment.survey_type.map({"nps": 10, "csat": 4, "ces": 6})
    negative = with_comment.comment.isin(COMMENTS[("zh", "neg")] + COMMENTS[("en", "neg")])
    positive = with_comment.comment.isin(COMMENTS[("zh", "pos")] + COMMENTS[("en", "pos")])
    assert (negative | positive).all()
    assert negative[norm < 0.3].all() and positive[norm > 0.8].all()
    assert (norm < 0.3).sum() > 10 and (norm > 0.8).sum() > 10
    assert with_comment.comment.nunique() > 60


def test_wait_times_vary_by_branch_and_hour(clean):
    landing, _ = clean
    it = load(landing, "interactions")
    br = it[it.channel == "branch"].assign(wait=lambda d: d.wait_seconds.astype(int),
                                            hour=lambda d: pd.to_datetime(d.started_at).dt.hour)
    by_branch = br.groupby("branch_id").wait.median()
    assert by_branch.max() > 1.8 * by_branch.min()
    assert br[br.hour.isin([12, 13])].wait.median() > 1.4 * br[br.hour.isin([9, 10, 15, 16])].wait.median()
    assert br.branch_id.notna().all() and it[it.channel != "branch"].branch_id.isna().all()
    assert (pd.to_datetime(it.ended_at) >= pd.to_datetime(it.started_at)).all()


def test_salary_credits_are_monthly(clean):
    landing, _ = clean
    tx = load(landing, "transactions")
    sal = tx[tx.description == "工资"]
    assert (sal.direction == "credit").all()
    months = sal.assign(m=sal.txn_ts.str[:7]).groupby("customer_id").m.nunique()
    assert (months >= 7).mean() > 0.8  # 240 days span 8-9 calendar months
    assert sal.groupby("customer_id").counterparty.nunique().max() == 1


def test_events_sessions_anonymous_then_login(clean):
    landing, _ = clean
    ev = load(landing, "events")
    anon = ev[ev.customer_id.isna()]
    assert 0.02 < len(anon) / len(ev) < 0.2
    first = ev.groupby("session_id").event_type.first()
    logged = ev.dropna(subset=["customer_id"]).groupby("session_id").event_type.first()
    assert (logged == "login").all()
    assert (first[anon.session_id.unique()] == "page_view").all()
    # anonymous devices are attributable: the same device logs in with a customer id
    dev_owner = ev.dropna(subset=["customer_id"]).groupby("device_id").customer_id.nunique()
    personal = anon.device_id[anon.device_id.str.startswith("DV")]
    assert personal.isin(dev_owner.index).all()
    assert (dev_owner[dev_owner.index.str.startswith("DV")] == 1).all()
    own = ev.dropna(subset=["customer_id"])
    own = own[own.device_id.str.startswith("DV")]
    assert own.groupby("customer_id").device_id.nunique().max() <= 3  # 1-3 personal devices


def test_master_data_changes_and_complaint_updates(clean):
    landing, summary = clean
    cust = load(landing, "customers")
    first_drop = cust[cust._folder == summary.start_date]
    truth = pd.read_parquet(landing / "_meta" / "customer_truth.parquet")
    assert set(first_drop.customer_id) == set(truth[~truth.onboarded_in_history].customer_id)
    later = cust[cust._folder > summary.start_date]
    assert len(later) > 100
    versions = cust.groupby("customer_id").updated_at.agg(["count", "min", "max"])
    changed = versions[versions["count"] > 1]
    assert len(changed) > 50 and (changed["max"] > changed["min"]).all()
    # synthetic PII in realistic formats
    assert cust.national_id.str.match(r"^\d{17}[\dX]$").all()
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = cust.national_id.map(lambda s: "10X98765432"[sum(int(d) * w for d, w in zip(s[:17], weights)) % 11])
    assert (check == cust.national_id.str[17]).all()
    assert (cust.national_id.str[6:14] == cust.birth_date.str.replace("-", "")).all()
    assert cust.phone.str.match(r"^1[3-9]\d{9}$").all()
    assert cust.email.str.match(r"^[a-z0-9.]+@[a-z.]*example\.(com|cn|net|org)$").all()
    latest = cust.drop_duplicates("customer_id", keep="last")
    assert 0.85 < (latest.preferred_language == "zh").mean() < 0.99
    assert latest.full_name.str.contains(r"[\u4e00-\u9fff]").mean() > 0.85
    new = cust[cust.customer_id.isin(truth[truth.onboarded_in_history].customer_id)].drop_duplicates("customer_id")
    assert (new._folder == new.onboarding_date).all()
    cp = load(landing, "complaints")
    rank = cp.status.map({"open": 0, "in_progress": 1, "resolved": 2, "rejected": 2})
    per = cp.assign(rank=rank).sort_values(["_folder", "rank"]).groupby("complaint_id")
    multi = per.filter(lambda g: len(g) > 1)
    assert multi.complaint_id.nunique() > 20
    assert per["rank"].apply(lambda r: r.is_monotonic_increasing).all()
    final = cp[cp.status.isin(["resolved", "rejected"])]
    assert final.closed_at.notna().all() and cp[cp.status == "open"].closed_at.isna().all()


def test_catalog_is_resent_with_one_change(clean):
    landing, _ = clean
    cat = load(landing, "product_catalog")
    folders = sorted(cat._folder.unique())
    assert len(folders) == 2
    a = cat[cat._folder == folders[0]].set_index("product_code").drop(columns=["_folder", "_file"])
    b = cat[cat._folder == folders[1]].set_index("product_code").drop(columns=["_folder", "_file"])
    diff = (a != b) & ~(a.isna() & b.isna())
    assert diff.values.sum() == 1
    assert 15 <= len(a) <= 25 and (a.active == "false").sum() == 2
    assert set(a.family) >= {"current_account", "savings", "time_deposit", "wealth_management", "fund",
                             "insurance", "credit_card", "personal_loan", "mortgage"}
    assert a.loc[a.family.isin(["time_deposit", "savings"]), "risk_level"].eq("R1").all()
    assert a.loc[a.family == "fund", "risk_level"].isin(["R3", "R4", "R5"]).all()


# --------------------------------------------------------------- dirty mode
def test_dirty_mode_injects_every_defect_kind(dirty):
    landing, summary = dirty
    for kind, n in summary.defects.items():
        assert n > 0, kind
    assert summary.variants["timestamp_with_offset"] > 0 and summary.variants["bool_spelling"] > 0
    kinds = {d["kind"]: d for d in summary.file_defects}
    assert set(kinds) == {"truncated_gzip", "gbk_encoding", "resent_file", "resent_file_same_name"}
    for d in summary.file_defects:
        assert (landing / d["path"]).exists()
    # the truncated gzip cannot be read, its re-delivery can
    trunc = kinds["truncated_gzip"]
    with pytest.raises((EOFError, OSError)):
        gzip.decompress((landing / trunc["path"]).read_bytes())
    lines = gzip.decompress((landing / trunc["redelivered_as"]).read_bytes()).count(b"\n")
    assert lines - 1 == trunc["rows"] > 0
    # the GBK file is not UTF-8 but is valid GBK
    raw = (landing / kinds["gbk_encoding"]["path"]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert "customer_id" in raw.decode("gbk")
    # other sources still have good files that day
    day_folder = Path(kinds["gbk_encoding"]["path"]).parent.name
    assert (landing / "transactions" / day_folder).exists()
    same = kinds["resent_file_same_name"]
    assert Path(same["path"]).name == Path(same["original"]).name
    assert (landing / same["path"]).read_bytes() == (landing / same["original"]).read_bytes()


def test_dirty_mode_counts_are_exact(dirty):
    landing, summary = dirty
    by = summary.defects_by_source
    readable = [f for f in sorted((landing / "transactions").glob("*/*"))
                if "_resend" not in f.name and not any(d["kind"] == "truncated_gzip" and d["path"].endswith(f.name)
                                                       and f.parent.name in d["path"] for d in summary.file_defects)]
    tx = pd.concat([_read_file_lenient(f) for f in readable])
    assert (tx.amount.fillna("").str.startswith("-")).sum() == by["transactions"]["negative_amount"]
    bad_dir = ~tx.direction.isin(["debit", "credit"]) & tx.direction.notna()
    bad_chan = ~tx.channel.isin(SOURCES["transactions"].column("channel").enum) & tx.channel.notna()
    assert (bad_dir | bad_chan).sum() == by["transactions"]["unknown_enum"]
    late = list((landing / "transactions").glob("*/*_late.csv.gz"))
    assert sum(len(_read_file_lenient(f)) for f in late) == by["transactions"]["late_row"]
    for f in late:  # a late file is tagged with its business date, delivered 1-5 days later
        tag = dt.datetime.strptime(f.name.split("_")[1], "%Y%m%d").date()
        assert 1 <= (dt.date.fromisoformat(f.parent.name) - tag).days <= 5
    # CSV lines with a wrong number of fields
    bad_lines = 0
    for f in sorted((landing / "interactions").glob("*/*.csv")):
        with open(f, encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        bad_lines += sum(len(r) != len(rows[0]) for r in rows[1:])
    assert bad_lines == by["interactions"]["wrong_column_count"]
    resent = sorted((landing / "customers").glob("*/*_resend.csv"))
    assert sum(len(_read_file_lenient(f)) for f in resent) == by["customers"]["overlapping_resend"]


def _read_file_lenient(path: Path) -> pd.DataFrame:
    """Rows of a possibly dirty CSV(.gz) with the right number of fields (csv module)."""
    data = path.read_bytes()
    text = (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    good = [r for r in rows[1:] if len(r) == len(rows[0])]
    return pd.DataFrame(good, columns=rows[0]).replace("", None)
