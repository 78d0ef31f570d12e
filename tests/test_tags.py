"""features.tags: rules from conf/tags.yaml, checked at start-up and applied in the engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from c360.contract import SOURCES
from c360.settings import ConfigError, Tag, load_settings
from features.registry import REGISTRY
from features.tags import apply_tags, check_rules, customer_tags

CONF = Path(__file__).resolve().parent.parent / "conf"


def tag(name, rule):
    return Tag(name=name, label_zh="标签", description="A test tag.", owner="tests", rule=rule)


@pytest.mark.unit
def test_shipped_tags_are_valid_and_documented():
    tags = load_settings(environ={}).tags
    assert len(tags) >= 15
    assert all(t.description and t.owner and t.label_zh for t in tags)


def test_tags_are_applied_per_customer(spark):
    from datetime import date

    df = spark.createDataFrame(
        [("C1", date(2026, 6, 30), 600000.0, 10, 0.9, "detractor"),
         ("C2", date(2026, 6, 30), 1000.0, 0, None, None)],
        "customer_id string, as_of_date date, total_aum double, active_days_digital_30d bigint, "
        "digital_share_90d double, nps_category string")
    tags = [tag("high_value", "total_aum >= 500000"),
            tag("digital_native", "active_days_digital_30d >= 8 AND coalesce(digital_share_90d, 0) >= 0.7"),
            tag("detractor", "nps_category = 'detractor'")]
    tagged = {r.customer_id: r.tags for r in apply_tags(df, tags).collect()}
    assert tagged == {"C1": ["high_value", "digital_native", "detractor"], "C2": []}  # null rule: no tag
    long = sorted((r.customer_id, r.tag) for r in customer_tags(apply_tags(df, tags)).collect())
    assert long == [("C1", "detractor"), ("C1", "digital_native"), ("C1", "high_value")]


@pytest.mark.unit
@pytest.mark.parametrize("rule, message", [
    ("total_aumm >= 1", "unknown feature 'total_aumm'"),
    ("upper_bound(total_aum) > 1", "function upper_bound() is not allowed"),
    ("(total_aum > 1", "unbalanced parentheses"),
    ("total_aum > 1; DROP TABLE x", "';' is not allowed"),
])
def test_invalid_rules_fail_with_the_tag_name(rule, message):
    with pytest.raises(ConfigError, match="tag bad_tag") as err:
        check_rules([tag("bad_tag", rule)], features=set(REGISTRY))
    assert message in str(err.value)


@pytest.mark.unit
def test_a_bad_tag_file_stops_loading(tmp_path):
    for f in CONF.glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "tags.yaml").write_text(
        "tags:\n  - {name: vip, label_zh: 贵宾, description: Very important., owner: CRM, rule: 'aum > 1'}\n",
        encoding="utf-8")
    with pytest.raises(ConfigError, match="tag vip: unknown feature 'aum'"):
        load_settings(tmp_path, environ={})
    (tmp_path / "tags.yaml").write_text("tags:\n  - {name: vip, rule: 'total_aum > 1'}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tags\[vip\]\.label_zh"):
        load_settings(tmp_path, environ={})


@pytest.mark.unit
def test_no_pii_column_among_the_profile_features():
    pii = set(SOURCES["customers"].pii_columns)
    assert not pii & set(REGISTRY)
    assert not [f for f in REGISTRY if f.endswith("_token")]
