"""Experience, service, complaint and topic KPIs (features.experience, features.service,
features.complaints, features.topics, jobs.kpis): values computed by hand on small frames."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from features.experience import experience_by_dimension, experience_kpis, survey_answers
from features.profile import AsOf
from features.service import service_contacts, service_kpis

AS_OF = date(2026, 6, 30)
AT = AsOf(AS_OF, "Asia/Shanghai")  # the day ends at 2026-06-30 16:00 UTC
FEEDBACK = "response_id string, customer_id string, survey_type string, score int, touchpoint string, " \
           "channel string, responded_at timestamp"


# ---------------------------------------------------------------------------------------
# experience: NPS, CSAT, CES

def test_experience_kpis_by_hand(spark):
    t = lambda d, h=10: datetime(2026, 6, d, h)  # noqa: E731 (UTC)
    answers = spark.createDataFrame([
        # group A, NPS: C1 answered 3 then 10 (latest counts: promoter), C2 9 (promoter),
        # C3 6 (detractor), C4 7 (passive) -> 4 respondents, 50% - 25% = 25 points
        ("R01", "C1", "nps", 3, "A", None, t(1)), ("R02", "C1", "nps", 10, "A", None, t(9)),
        ("R03", "C2", "nps", 9, "A", None, t(2)), ("R04", "C3", "nps", 6, "A", None, t(2)),
        ("R05", "C4", "nps", 7, "A", None, t(2)),
        # CSAT 5, 4, 3, 2, 5: 3 of 5 are 4-5 -> 60%; CES 2, 3, 7 -> 4.0
        ("R06", "C1", "csat", 5, "A", None, t(3)), ("R07", "C1", "csat", 4, "A", None, t(4)),
        ("R08", "C2", "csat", 3, "A", None, t(3)), ("R09", "C3", "csat", 2, "A", None, t(3)),
        ("R10", "C4", "csat", 5, "A", None, t(3)),
        ("R11", "C1", "ces", 2, "A", None, t(3)), ("R12", "C2", "ces", 3, "A", None, t(3)),
        ("R13", "C3", "ces", 7, "A", None, t(3)),
        # group B: a single NPS answer (fewer than 2 respondents: too few, count kept)
        ("R14", "C1", "nps", 10, "B", None, t(3)),
    ], FEEDBACK)
    rows = {r.touchpoint: r for r in experience_kpis(answers, ["touchpoint"], 2).collect()}
    a = rows["A"]
    assert (a.nps, a.nps_respondents, a.nps_promoters, a.nps_detractors, a.nps_mean_score) == (25.0, 4, 2, 1, 8.0)
    assert (a.csat, a.csat_responses, a.csat_satisfied) == (60.0, 5, 3)
    assert (a.ces, a.ces_responses) == (4.0, 3)
    b = rows["B"]
    assert (b.nps, b.nps_respondents, b.nps_promoters, b.nps_mean_score) == (None, 1, 1, None)
    assert (b.csat, b.csat_responses, b.ces, b.ces_responses) == (None, 0, None, 0)
    # with a minimum of 1 the single answer counts: 100% promoters
    assert {r.touchpoint: r.nps for r in experience_kpis(answers, ["touchpoint"], 1).collect()}["B"] == 100.0


def test_experience_point_in_time_and_dimensions(spark):
    """Only answers given in the 365 days up to the end of as_of (bank time) count; a
    customer's latest answer before the cutoff, not one after it."""
    feedback = spark.createDataFrame([
        ("R1", "C1", "nps", 10, "app", "sms", datetime(2026, 6, 30, 15, 59)),    # 23:59 local on as_of: in
        ("R2", "C1", "nps", 0, "app", "sms", datetime(2026, 6, 30, 16, 0)),      # 00:00 local next day: out
        ("R3", "C2", "nps", 0, "app", "app", datetime(2025, 6, 30, 16, 0)),      # 365 days before the cutoff: in
        ("R4", "C3", "nps", 0, "app", "app", datetime(2025, 6, 30, 15, 59)),     # a minute earlier: out
        ("R5", "C4", "csat", 5, None, "app", datetime(2026, 6, 1)),
    ], FEEDBACK)
    answers = survey_answers(feedback, AT, 365)
    assert sorted(r.response_id for r in answers.collect()) == ["R1", "R3", "R5"]
    rows = {(r.dimension, r.value): r for r in experience_by_dimension(answers, 1).collect()}
    app = rows[("touchpoint", "app")]   # C1 promoter, C2 detractor
    assert (app.nps, app.nps_respondents, app.nps_promoters, app.nps_detractors) == (0.0, 2, 1, 1)
    assert (rows[("touchpoint", "(unknown)")].csat, rows[("touchpoint", "(unknown)")].csat_responses) == (100.0, 1)
    assert (rows[("channel", "sms")].nps, rows[("channel", "app")].nps) == (100.0, -100.0)
    assert set(rows) == {("touchpoint", "app"), ("touchpoint", "(unknown)"), ("channel", "sms"),
                         ("channel", "app")}


# ---------------------------------------------------------------------------------------
# service

INTERACTIONS = "interaction_id string, customer_id string, channel string, branch_id string, " \
               "started_at timestamp, wait_seconds bigint, handle_seconds bigint, reason string, " \
               "resolved_first_contact boolean"


def _contacts(spark):
    # UTC times; the bank's clock is UTC+8: 04:xx UTC is 12:xx local, 01:xx is 09:xx, 11:xx is 19:xx
    d = lambda h, m=0, day=20: datetime(2026, 6, day, h, m)  # noqa: E731
    return spark.createDataFrame([
        ("I01", "C1", "branch", "BR01", d(4), 100, 300, "account_service", True),
        ("I02", "C2", "branch", "BR01", d(4, 10), 200, 500, "transfer", True),
        ("I03", "C3", "branch", "BR01", d(4, 20), 300, 100, "transfer", False),
        ("I04", "C4", "branch", "BR01", d(4, 30), 400, 200, "account_service", None),
        ("I05", "C5", "branch", "BR01", d(1), 1000, 400, "card", True),
        ("I06", "C6", "branch", "BR02", d(1, 5), 50, 60, "card", True),
        ("I07", "C7", "branch", "BR02", d(1, 6), 60, 80, "card", False),
        ("I08", "C8", "call_center", None, d(11), 30, 90, "card", True),
        ("I09", "C9", "call_center", None, d(11, 30), 200, None, "loan_inquiry", True),
        ("I10", "C1", "branch", "BR01", datetime(2026, 6, 30, 16, 0), 9999, 9, "card", True),  # after as_of
        ("I11", "C1", "branch", "BR01", datetime(2026, 4, 1, 4, 0), 9999, 9, "card", True),    # before 90 days
    ], INTERACTIONS)


def test_service_kpis_by_hand(spark):
    contacts = service_contacts(_contacts(spark), AT, 90)
    rows = {(r.dimension, r.value): r for r in
            service_kpis(contacts, {"branch": 250, "default": 100}, top_reasons=2).collect()}
    br1 = rows[("branch", "BR01")]   # waits 100, 200, 300, 400, 1000
    assert (br1.contacts, br1.branch_id, br1.channel, br1.hour) == (5, "BR01", None, None)
    assert (br1.wait_p50_s, br1.wait_p90_s) == (300.0, pytest.approx(760.0))  # 400 + 0.6 x (1000 - 400)
    assert br1.over_target_share == 0.6                                       # 300, 400, 1000 > 250
    assert (br1.handle_p50_s, br1.fcr_rate) == (300.0, 0.75)                  # one contact does not say
    assert br1.top_reasons == ["account_service", "transfer"]                 # 2 each, then alphabetical
    br2 = rows[("branch", "BR02")]
    assert (br2.wait_p50_s, br2.wait_p90_s, br2.over_target_share, br2.top_reasons) == (55.0, 59.0, 0.0, ["card"])
    ch = rows[("channel", "branch")]  # 50, 60, 100, 200, 300, 400, 1000
    assert (ch.contacts, ch.wait_p50_s, ch.wait_p90_s) == (7, 200.0, pytest.approx(640.0))
    cc = rows[("channel", "call_center")]  # target: the default 100 s
    assert (cc.contacts, cc.wait_p50_s, cc.over_target_share, cc.handle_p50_s) == (2, 115.0, 0.5, 90.0)
    noon = rows[("hour", "12h")]
    assert (noon.hour, noon.contacts, noon.wait_p50_s) == (12, 4, 250.0)
    assert (rows[("hour", "09h")].contacts, rows[("hour", "09h")].wait_p50_s) == (3, 60.0)
    assert rows[("hour", "19h")].contacts == 2
    bh = rows[("branch_hour", "BR01 12h")]
    assert (bh.branch_id, bh.hour, bh.contacts, bh.wait_p50_s, bh.wait_p90_s) == ("BR01", 12, 4, 250.0,
                                                                                pytest.approx(370.0))
    assert {k for k in rows if k[0] == "branch_hour"} == {("branch_hour", "BR01 12h"), ("branch_hour", "BR01 09h"),
                                                          ("branch_hour", "BR02 09h")}


# ---------------------------------------------------------------------------------------
# complaints: status history through ingest and silver, KPIs at as_of

HEADER = "complaint_id,customer_id,opened_at,closed_at,channel,category,severity,status,description," \
         "product_code,compensation_amount\n"
# (delivery day, row); times are the bank's (no offset)
DELIVERIES = [
    ("2026-06-01", "K1,C1,2026-06-01 10:00:00,,branch,fees,high,open,手续费太高,P1,"),
    ("2026-06-02", "K2,C2,2026-06-02 10:00:00,,app,fees,low,open,Fee charged twice,,"),
    ("2026-06-03", "K1,C1,2026-06-01 10:00:00,,branch,fees,high,in_progress,手续费太高,P1,"),
    ("2026-06-05", "K1,C1,2026-06-01 10:00:00,2026-06-05 10:00:00,branch,fees,high,resolved,手续费太高,P1,"),
    ("2026-06-10", "K1,C1,2026-06-01 10:00:00,,branch,fees,high,in_progress,手续费太高,P1,"),   # re-opened
    ("2026-06-10", "K3,C3,2026-06-10 08:00:00,,branch,wait_time,medium,open,排队一个小时 call 13800138000,,"),
    ("2026-06-12", "K2,C2,2026-06-02 10:00:00,2026-06-12 10:00:00,app,fees,low,resolved,Fee charged twice,,"),
    ("2026-06-20", "K1,C1,2026-06-01 10:00:00,2026-06-20 10:00:00,branch,fees,high,resolved,手续费太高,P1,"),
    ("2026-06-25", "K4,C4,2026-06-25 12:00:00,,branch,fees,low,open,年费,,"),
    ("2026-07-02", "K4,C4,2026-06-25 12:00:00,2026-07-01 12:00:00,branch,fees,low,resolved,年费,,"),  # after as_of
]


@pytest.fixture(scope="module")
def complaint_lake(spark, settings, tmp_path_factory):
    import warnings

    from jobs import ingest, silver
    from helpers import write_landing

    root = tmp_path_factory.mktemp("complaints")
    s = settings.with_paths(landing=root / "landing", lake=root / "lake")
    by_day: dict[str, list[str]] = {}
    for day, row in DELIVERIES:
        by_day.setdefault(day, []).append(row)
    for day, rows in by_day.items():
        write_landing(s.landing, "complaints", day, "complaints.csv", HEADER + "\n".join(rows) + "\n")
    ingest.run(spark, s, sources=["complaints"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # development PII key
        silver.run(spark, s)
    return s


def test_complaint_history_keeps_every_delivered_status(spark, complaint_lake):
    from c360 import lake

    hist = lake.read(spark, lake.table_path(complaint_lake.lake, "silver", "complaint_history"))
    got = sorted((r.complaint_id, str(r.delivered_on), r.status) for r in hist.collect())
    assert got == sorted((row.split(",")[0], day, row.split(",")[7]) for day, row in DELIVERIES)
    # free text is masked as in silver complaints, which keep the latest version only
    assert "[phone]" in hist.where("complaint_id = 'K3'").first().description
    current = lake.read(spark, lake.table_path(complaint_lake.lake, "silver", "complaints"))
    assert {r.complaint_id: r.status for r in current.collect()} == {"K1": "resolved", "K2": "resolved",
                                                                     "K3": "open", "K4": "resolved"}
    # complaint descriptions get a sentiment score like survey comments
    assert {r.complaint_id for r in current.where("sentiment_score IS NOT NULL").collect()} == {"K1", "K2", "K3", "K4"}


def test_complaint_kpis_by_hand(spark, complaint_lake):
    from c360 import lake
    from features.complaints import complaint_kpis, complaint_status_at

    hist = lake.read(spark, lake.table_path(complaint_lake.lake, "silver", "complaint_history"))
    status = complaint_status_at(hist, AT)
    # at as_of K4's resolution (delivered on 2 July) is not known yet; K1 was re-opened once
    assert {r.complaint_id: (r.status, r.reopened) for r in status.collect()} == {
        "K1": ("resolved", True), "K2": ("resolved", False), "K3": ("open", False), "K4": ("open", False)}
    rows = {(r.dimension, r.value): r for r in
            complaint_kpis(status, AT, 365, {"low": 5, "medium": 15, "high": 30}, customers=200).collect()}
    fees = rows[("category", "fees")]  # K1 (19 days, high: within SLA), K2 (10 days, low: breach), K4 open
    assert (fees.opened, fees.rate_per_1000, fees.closed, fees.reopened) == (3, 15.0, 2, 1)
    assert (fees.resolution_p50_days, fees.resolution_p90_days) == (14.5, pytest.approx(18.1))
    assert (fees.sla_breaches_closed, fees.backlog, fees.sla_breaches_open) == (1, 1, 1)
    assert (fees.backlog_age_p50_days, fees.backlog_age_max_days) == (5.5, 5.5)  # 25 Jun 12:00 to 1 Jul 00:00
    wait = rows[("category", "wait_time")]  # K3: open 20 d 16 h at as_of, medium SLA 15 d
    assert (wait.opened, wait.closed, wait.resolution_p50_days, wait.backlog) == (1, 0, None, 1)
    assert (wait.backlog_age_max_days, wait.sla_breaches_open) == (pytest.approx(20 + 16 / 24), 1)
    branch = rows[("channel", "branch")]  # K1, K3, K4
    assert (branch.opened, branch.closed, branch.backlog) == (3, 1, 2)
    assert branch.backlog_age_p50_days == pytest.approx((20 + 16 / 24 + 5.5) / 2)
    assert (rows[("severity", "high")].resolution_p50_days, rows[("severity", "high")].reopened) == (19.0, 1)
    assert (rows[("product", "P1")].opened, rows[("product", "(unknown)")].opened) == (1, 3)
    # later: K4 closed after 5.5 days, a breach of the low SLA; nothing left in the backlog
    later = {(r.dimension, r.value): r for r in complaint_kpis(
        complaint_status_at(hist, AsOf(date(2026, 7, 2), "Asia/Shanghai")), AsOf(date(2026, 7, 2), "Asia/Shanghai"),
        365, {"low": 5, "medium": 15, "high": 30}, customers=None).collect()}
    assert (later[("category", "fees")].closed, later[("category", "fees")].sla_breaches_closed) == (3, 2)
    assert (later[("category", "fees")].backlog, later[("category", "fees")].rate_per_1000) == (0, None)


# ---------------------------------------------------------------------------------------
# the job on a generated bank: the table recovers the generator's branch and hour effects

@pytest.fixture(scope="module")
def generated(spark, settings, tmp_path_factory):
    import warnings

    from c360.synth import generate
    from jobs import ingest, kpis, silver

    root = tmp_path_factory.mktemp("kpis_bank")
    generate(customers=12000, days=240, as_of=AS_OF, seed=7, landing=root / "landing", dirty_rate=0.0,
             workers=1)  # no fork: this process runs the Sail engine (threads), a forked child can deadlock
    s = settings.with_paths(landing=root / "landing", lake=root / "lake")
    # the whole history as the service window: enough branch contacts per branch
    s = s.model_copy(update={"kpis": s.kpis.model_copy(update={
        "service": s.kpis.service.model_copy(update={"window_days": 240})})})
    ingest.run(spark, s, as_of=AS_OF, sources=["interactions", "feedback", "complaints"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # development PII key
        silver.run(spark, s)
    return s, kpis.run(spark, s, AS_OF)


def test_service_kpis_recover_the_generators_slow_branches_and_peak_hours(spark, generated):
    import numpy as np

    from c360 import lake
    from c360.synth.population import build_branches
    from c360.synth.service import BRANCH_HOUR_WAIT

    s, result = generated
    assert set(result["rows"]) == {"experience_kpis", "service_kpis", "complaint_kpis", "topic_kpis"}
    table = lake.read(spark, lake.table_path(s.lake, "gold", "service_kpis")).where(f"as_of_date = DATE'{AS_OF}'")
    ids, _, slow = build_branches(7)
    factor = dict(zip(ids.to_pylist(), slow))
    branches = [(r.value, r.wait_p50_s) for r in table.where("dimension = 'branch' AND contacts >= 40").collect()]
    assert len(branches) >= 20
    by_p50 = [b for b, _ in sorted(branches, key=lambda x: -x[1])]
    truth = [b for b, _ in sorted(branches, key=lambda x: -factor[x[0]])]
    n_slow = sum(factor[b] > 1.6 for b, _ in branches)  # the chronically slow ones (x2.2)
    assert n_slow >= 3
    # the slowest branches by median wait are exactly the generator's slow ones
    assert set(by_p50[:n_slow]) == set(truth[:n_slow])
    # and the medians follow the branch factor (rank correlation)
    p50 = np.array([w for _, w in branches])
    f = np.array([factor[b] for b, _ in branches])
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(p50), rank(f))[0, 1] > 0.8
    # branch contacts by hour: the lunchtime peak first, then the after-work one
    hours = {r.hour: r.wait_p50_s for r in table.where("dimension = 'branch_hour'").groupBy("hour")
             .agg({"wait_p50_s": "avg"}).withColumnRenamed("avg(wait_p50_s)", "wait_p50_s").collect()}
    slowest = sorted(hours, key=lambda h: -hours[h])
    peaks = sorted(np.flatnonzero(BRANCH_HOUR_WAIT > 1).tolist(), key=lambda h: -BRANCH_HOUR_WAIT[h])
    assert set(slowest[:2]) == set(peaks[:2]) == {12, 13} and slowest[2] == peaks[2] == 16


def test_the_job_writes_aggregates_only_and_reruns_idempotently(spark, generated):
    from c360 import lake
    from jobs import kpis

    s, first = generated
    for name, schema in kpis.TABLES.items():
        df = lake.read(spark, lake.table_path(s.lake, "gold", name))
        assert not {"customer_id", "comment", "description", "text"} & set(df.columns), name
        assert df.count() == first["rows"][name] > 0
    exp = {(r.dimension, r.value): r for r in lake.read(spark, lake.table_path(s.lake, "gold", "experience_kpis"))
           .collect()}
    assert all(-100 <= r.nps <= 100 for r in exp.values() if r.nps is not None)
    assert {d for d, _ in exp} == {"touchpoint", "channel"}
    topics = lake.read(spark, lake.table_path(s.lake, "gold", "topic_kpis"))
    assert {r.source for r in topics.collect()} == {"feedback", "complaints"}
    waiting = topics.where("source = 'complaints' AND value = 'wait_time' AND topic = 'waiting'").first()
    assert waiting is not None and waiting.share > 0.5
    before = {n: sorted(map(tuple, lake.read(spark, lake.table_path(s.lake, "gold", n)).collect()))
              for n in kpis.TABLES}
    assert kpis.run(spark, s, AS_OF)["rows"] == first["rows"]
    after = {n: sorted(map(tuple, lake.read(spark, lake.table_path(s.lake, "gold", n)).collect()))
             for n in kpis.TABLES}
    assert after == before


# ---------------------------------------------------------------------------------------
# topics

def test_topics_from_the_lexicon_counted_per_group(spark):
    from features.topics import topic_counts

    texts = spark.createDataFrame([
        ("feedback", "branch_service", "排队等了一个小时，柜员态度也不好", -0.8, "negative"),   # waiting, attitude
        ("feedback", "branch_service", "Waited forever in the QUEUE", -0.5, "negative"),        # waiting (any case)
        ("feedback", "branch_service", "很满意", 0.9, "positive"),                              # no topic
        ("feedback", "branch_service", "  ", None, None),                                        # blank: not a text
        ("feedback", "app", "The app crashes at login", -0.6, "negative"),                       # app failure
        ("complaints", "fees", "跨行转账手续费太高", -0.4, "negative"),                          # fees
        ("complaints", None, "Fee charged twice, staff were friendly though", 0.2, "neutral"),  # fees, attitude
    ], "source string, group string, text string, sentiment_score double, sentiment_label string")
    topics = {"waiting": ["排队", "wait", "queue"], "staff_attitude": ["态度", "friendly"],
              "app_failure": ["闪退", "crash"], "fees": ["手续费", "Fee"]}
    rows = {(r.source, r.group, r.topic): r for r in topic_counts(texts, topics).collect()}
    w = rows[("feedback", "branch_service", "waiting")]
    assert (w.texts, w.mentions, w.share, w.negative_mentions, w.sentiment_avg) == (3, 2, 2 / 3, 2, -0.65)
    assert rows[("feedback", "branch_service", "staff_attitude")].mentions == 1
    assert (rows[("feedback", "app", "app_failure")].mentions, rows[("feedback", "app", "app_failure")].share) == (1, 1.0)
    assert rows[("complaints", "fees", "fees")].negative_mentions == 1
    unknown = rows[("complaints", "(unknown)", "fees")]  # "Fee" in the lexicon matches "fee" in any case
    assert (unknown.mentions, unknown.negative_mentions) == (1, 0)
    assert rows[("complaints", "(unknown)", "staff_attitude")].sentiment_avg == 0.2
    assert set(rows) == {("feedback", "branch_service", "waiting"), ("feedback", "branch_service", "staff_attitude"),
                         ("feedback", "app", "app_failure"), ("complaints", "fees", "fees"),
                         ("complaints", "(unknown)", "fees"), ("complaints", "(unknown)", "staff_attitude")}


# ---------------------------------------------------------------------------------------
# configuration and the report

@pytest.mark.parametrize("edit, message", [
    (lambda k: k["service"].update(wait_target_seconds={"branch": 900}), "needs a 'default' target"),
    (lambda k: k["service"]["wait_target_seconds"].update(branch=0), "targets must be > 0 seconds: branch"),
    (lambda k: k["complaints"].update(sla_days={"low": 5, "high": 30}), "no SLA for severity medium"),
    (lambda k: k["complaints"]["sla_days"].update(urgent=1), "kpis.complaints.sla_days.urgent"),
    (lambda k: k["experience"].update(min_respondents=0), "kpis.experience.min_respondents"),
    (lambda k: k["topics"].update({"Bad Name": {"en": ["x"]}}), "lower snake case: Bad Name"),
    (lambda k: k["topics"].update(empty={"zh": [], "en": [" "]}), "at least one zh or en term"),
    (lambda k: k.update(windows=3), "kpis.windows"),
])
def test_invalid_kpis_configuration_fails_at_start_up(tmp_path, edit, message):
    import re
    import shutil

    import yaml

    from c360.settings import DEFAULT_CONF_DIR, ConfigError, load_settings

    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf, ignore=shutil.ignore_patterns("local.yaml"))
    raw = yaml.safe_load((conf / "kpis.yaml").read_text(encoding="utf-8"))
    edit(raw["kpis"])
    (conf / "kpis.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(conf, environ={})


def test_report_shows_too_few_and_the_exact_population_nps(settings):
    from c360.report import _population, experience_value

    tiers = [dict(dimension="value_tier", segment="mass", customers=100, aum_avg=1.0, aum_total=100.0,
                  complaint_rate=0.0, churn_rate=0.0, digital_share=0.0, avg_wait_s=None,
                  nps=20.0, nps_respondents=40, nps_promoters=16, nps_detractors=8, csat=None, csat_responses=3,
                  csat_satisfied=3, ces=None, ces_responses=0),
             dict(dimension="value_tier", segment="high_end", customers=10, aum_avg=1.0, aum_total=10.0,
                  complaint_rate=0.0, churn_rate=0.0, digital_share=0.0, avg_wait_s=None,
                  nps=None, nps_respondents=5, nps_promoters=5, nps_detractors=0, csat=None, csat_responses=2,
                  csat_satisfied=0, ces=None, ces_responses=0)]
    assert experience_value(tiers[0], "nps", signed=True) == "+20"
    assert experience_value(tiers[1], "nps", signed=True) == "too few 样本不足 (n=5)"
    assert experience_value(tiers[1], "ces") == "—"  # nobody answered
    pop = _population(tiers, min_respondents=5)
    # (16 + 5 promoters - 8 detractors) / 45 respondents, not an average of the tiers' NPS
    assert pop["nps"] == pytest.approx(100 * 13 / 45) and pop["csat"] == 60.0 and pop["ces"] is None


# ---------------------------------------------------------------------------------------
# the service report (c360.service_report), written by the kpis step

REPORT_DATES = (date(2026, 6, 16), date(2026, 6, 23), AS_OF)
HOSTILE_BRANCH = "<script>alert(1)</script>"
HOSTILE_CATEGORY = "<img/src=x/onerror=alert(2)>"  # (silver turns spaces in a category into _)


class _Rows:
    """The cell texts of every ``<tr class="...">`` of a page, by class (entities decoded)."""

    def __init__(self, page: str):
        from html.parser import HTMLParser

        self.by_class: dict[str, list[list[str]]] = {}
        rows = self.by_class

        class P(HTMLParser):
            row, cell = None, None

            def handle_starttag(self, tag, attrs):
                if tag == "tr":
                    self.row = []
                    rows.setdefault(dict(attrs).get("class") or "", []).append(self.row)
                elif tag in ("td", "th") and self.row is not None:
                    self.cell = []

            def handle_endtag(self, tag):
                if tag in ("td", "th") and self.cell is not None:
                    self.row.append("".join(self.cell).strip())
                    self.cell = None

            def handle_data(self, data):
                if self.cell is not None:
                    self.cell.append(data)

        P(convert_charrefs=True).feed(page)

    def __getitem__(self, cls: str) -> list[list[str]]:
        return self.by_class.get(cls, [])


@pytest.fixture(scope="module")
def service_lake(spark, settings, banks, tmp_path_factory):
    """A small generated bank (500 customers, 120 days) with one delivery more: branch
    contacts at a branch named like a script and a complaint in a category named like an
    image tag. Ingested and built into silver; the kpis step run for three as_of dates."""
    import csv
    import io
    import shutil
    import warnings

    from helpers import write_landing

    from c360.contract import SOURCES
    from jobs import ingest, kpis, silver

    root = tmp_path_factory.mktemp("service_report")
    shutil.copytree(banks.landing(500, 120, AS_OF, 26).landing, root / "landing")
    s = settings.with_paths(landing=root / "landing", lake=root / "lake")
    s = s.model_copy(update={"kpis": s.kpis.model_copy(update={
        "experience": s.kpis.experience.model_copy(update={"min_respondents": 10})})})

    def csv_text(source, rows):
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(SOURCES[source].column_names)
        w.writerows([[r.get(c, "") for c in SOURCES[source].column_names] for r in rows])
        return out.getvalue()

    first = min((s.landing / "customers").glob("*/*.csv")).read_text(encoding="utf-8").splitlines()
    customer = next(csv.DictReader(first))["customer_id"]
    # three contacts at 10:10 bank time (no offset: the bank's zone), waiting 181, 182 and 183
    # min: the slowest branch, first in the heatmap
    contacts = [dict(interaction_id=f"XI{i}", customer_id=customer, channel="branch", branch_id=HOSTILE_BRANCH,
                     started_at=f"2026-06-2{i}T10:10:00", ended_at=f"2026-06-2{i}T13:20:00",
                     wait_seconds=str(10800 + 60 * i), handle_seconds="300", reason="card",
                     resolved_first_contact="true") for i in range(1, 4)]
    write_landing(s.landing, "interactions", "2026-06-30", "extra.csv", csv_text("interactions", contacts))
    complaint = dict(complaint_id="XK1", customer_id=customer, opened_at="2026-06-20T10:00:00", channel="branch",
                     category=HOSTILE_CATEGORY, severity="high", status="open", description="手续费太高了")
    write_landing(s.landing, "complaints", "2026-06-30", "extra.csv", csv_text("complaints", [complaint]))
    ingest.run(spark, s, as_of=AS_OF, sources=["interactions", "feedback", "complaints"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # development PII key
        silver.run(spark, s)
    results = {d: kpis.run(spark, s, d) for d in REPORT_DATES}
    return s, results, customer


def _gold(spark, s, name, day=AS_OF):
    from c360 import lake

    return [r.asDict() for r in lake.read(spark, lake.table_path(s.lake, "gold", name))
            .where(f"as_of_date = DATE'{day.isoformat()}'").collect()]


def test_service_report_shows_the_kpi_tables_values(spark, service_lake):
    from c360.report import experience_value
    from c360.service_report import HEATMAP_BRANCHES

    s, results, _ = service_lake
    path = s.lake / "marketing" / "reports" / AS_OF.isoformat() / "service.html"
    assert results[AS_OF]["report"] == str(path)
    page = path.read_text(encoding="utf-8")
    rows = _Rows(page)

    def num(v, nd=0):
        return "—" if v is None else f"{v:,.{nd}f}"

    # experience: every touchpoint and channel, NPS in points or "too few" under the minimum (10)
    exp = _gold(spark, s, "experience_kpis")
    want = {(r["value"], experience_value(r, "nps", 0, True), num(r["nps_respondents"]),
             experience_value(r, "csat", 1) + ("%" if r["csat"] is not None else ""), num(r["csat_responses"]),
             experience_value(r, "ces", 2)) for r in exp}
    got = {(c[0], c[1], c[2], c[6], c[7], c[8]) for c in rows["exp-row"]}
    assert got == want and len(got) == len(exp) >= 6
    assert any(r["nps"] is not None for r in exp) and any("too few" in c[1] for c in rows["exp-row"])
    assert all(-100 <= r["nps"] <= 100 for r in exp if r["nps"] is not None)
    # the heatmap: a row per branch, a cell per hour with the branch x hour median wait in minutes
    svc = _gold(spark, s, "service_kpis")
    cells = {(r["branch_id"], r["hour"]): r for r in svc if r["dimension"] == "branch_hour"}
    hours = sorted({h for _, h in cells})
    heat = {c[0]: c[1:] for c in rows["heat-row"]}
    branch_p50 = {r["value"]: r["wait_p50_s"] for r in svc if r["dimension"] == "branch"}
    slowest = sorted(branch_p50, key=lambda b: (-branch_p50[b], b))[:HEATMAP_BRANCHES]
    assert [c[0] for c in rows["heat-row"]] == slowest and len(slowest) >= 5
    for (b, h), r in cells.items():
        if b in heat:
            assert heat[b][h - hours[0]] == num(r["wait_p50_s"] / 60), (b, h)
    assert slowest[0] == HOSTILE_BRANCH
    assert heat[HOSTILE_BRANCH][10 - hours[0]] == "182" and sum(c != "" for c in heat[HOSTILE_BRANCH]) == 1
    # complaints per severity and their trend over the three as_of dates
    cmp_ = {r["value"]: r for r in _gold(spark, s, "complaint_kpis") if r["dimension"] == "severity"}
    shown = {c[0]: c for c in rows["cmp-row"][:len(cmp_)]}
    assert set(shown) == set(cmp_)
    for sev, r in cmp_.items():
        assert shown[sev][1:4] == [num(r["opened"]), num(r["rate_per_1000"], 2), num(r["closed"])]
        assert (shown[sev][6], shown[sev][7], shown[sev][10]) == \
            (num(r["sla_breaches_closed"]), num(r["backlog"]), num(r["sla_breaches_open"]))
    trend = rows["trend-row"]
    assert [t[0] for t in trend] == [d.isoformat() for d in REPORT_DATES]
    for t, d in zip(trend, REPORT_DATES):
        sev_rows = [r for r in _gold(spark, s, "complaint_kpis", d) if r["dimension"] == "severity"]
        assert t[1:4] == [num(sum(r[k] for r in sev_rows)) for k in ("opened", "closed", "backlog")], d
        assert t[5:7] == [num(sum(r[k] for r in sev_rows)) for k in ("sla_breaches_closed", "sla_breaches_open")]
    assert len({tuple(t[1:4]) for t in trend}) > 1  # the dates differ
    # top topics: per source, the most mentioned topic over its groups first
    topics = _gold(spark, s, "topic_kpis")
    for source in ("feedback", "complaints"):
        totals: dict[str, int] = {}
        for r in topics:
            if r["source"] == source:
                totals[r["topic"]] = totals.get(r["topic"], 0) + r["mentions"]
        first = max(sorted(totals), key=lambda t: totals[t])
        assert [first, num(totals[first])] in [c[:2] for c in rows["topic-row"]], source
    # nothing invented for what does not exist yet: no recovery list, no recommendation here
    assert 'id="recovery-funnel"' in page and 'id="uplift"' in page
    assert "no service recovery list yet" in page and "recovery-row" not in page and "uplift-row" not in page
    assert "No recommendation date whose adoption window (30 days) has passed yet" in page


def test_service_report_is_self_contained_escaped_and_aggregate(spark, service_lake):
    """No request leaves the page (no script, no stylesheet link, no remote image), every
    delivered name is text (a branch named like a script, a category like an image tag),
    UTF-8 with a CJK font stack, and no customer id."""
    import re

    s, _, customer = service_lake
    page = (s.lake / "marketing" / "reports" / AS_OF.isoformat() / "service.html").read_text(encoding="utf-8")
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", page, re.IGNORECASE)
    assert not re.search(r"<[^>]*\s(?:src|href|xlink:href)\s*=|https?://", page, re.IGNORECASE)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img/src=x/onerror=alert(2)&gt;" in page
    rows = _Rows(page)
    assert HOSTILE_BRANCH in {c[0] for c in rows["heat-row"]}  # shown, as text
    assert HOSTILE_CATEGORY in {c[0] for c in rows["cmp-row"]}
    assert any(HOSTILE_CATEGORY in c[3] for c in rows["topic-row"])  # the fees topic's category
    assert '<meta charset="utf-8">' in page and '"Noto Sans CJK SC"' in page and "WenQuanYi Micro Hei" in page
    assert "服务与投诉" in page and customer not in page


def test_service_report_draws_in_a_browser(service_lake, tmp_path):
    """Headless Chromium, offline: the page is drawn (heatmap colours, tables, SVG trend),
    not blank, and its Chinese text is laid out as text."""
    from browser import dump_dom, ink, screenshot

    s, _, _ = service_lake
    page = s.lake / "marketing" / "reports" / AS_OF.isoformat() / "service.html"
    png = screenshot(page, tmp_path / "service.png")
    painted, colours = ink(png)
    assert painted > 0.15 and colours > 200, (painted, colours)
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    assert ink(screenshot(blank, tmp_path / "blank.png")) == (0.0, 1)  # what blank looks like
    dom = dump_dom(page)
    assert "服务与投诉" in dom and "<polyline" in dom


def test_service_report_font_stack_finds_a_cjk_font():
    """One of the report's font families is installed and covers Chinese (fontconfig):
    otherwise browsers here draw the Chinese text as empty boxes."""
    import re
    import shutil
    import subprocess

    from c360.report import TEMPLATES

    if not shutil.which("fc-list") or not subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True,
                                                         text=True, check=False).stdout.strip():
        pytest.skip("no CJK font installed (apt-get install fonts-wqy-microhei or fonts-noto-cjk)")
    css = (TEMPLATES / "report_style.css").read_text(encoding="utf-8")
    stack = re.search(r"font-family:([^;]+);", css).group(1)
    families = [f.strip().strip('"') for f in stack.split(",")]
    installed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True,
                               check=False).stdout
    assert any(f in installed for f in families if f not in ("sans-serif", "Arial")), (families, installed)
