"""Rules a bank must keep when it recommends a product, and the reasons it gives.

Pure: Spark column expressions and plain Python, no I/O. :mod:`jobs.score` applies them.

**Eligibility and suitability.** Each candidate (customer, active product not held) is
checked against the rules of :data:`CANDIDATE_RULES`, in that fixed order; the first rule
that fails is the candidate's ``exclusion_reason`` (null: eligible). Two more reasons come
before them and are counted without building the pairs: ``inactive_product`` and
``already_held`` (:func:`features.candidates.candidates` never makes those pairs).

- ``kyc_not_valid``: the customer's KYC status (trimmed, lower case) is not one of
  ``kyc_valid_statuses``, or is unknown (every candidate of the customer fails). First,
  so that such a customer is counted under it whatever else fails.
- ``age_limit``: the customer's age is outside the product's ``[min_age, max_age]``, or
  unknown while the product has an age limit.
- ``declined_recently``: the customer declined an offer of this product within
  ``decline_cooldown_days`` before the end of as_of.
- ``contact_limit``: the customer was sent ``max_offers_per_window`` offers or more in the
  last ``contact_window_days`` (every candidate of the customer fails).
- ``no_risk_assessment``: the customer has no valid risk assessment and the product is not
  rated at or below ``unassessed_max_risk`` (an unrated product is excluded too: such a
  customer gets only products rated R1-R2).
- ``risk_above_tolerance``: the product's risk level is above the customer's tolerance.

A product without a risk rating (credit products) is not limited by the tolerance of an
assessed customer.

**Reasons.** A recommendation's reasons are the templated features that hold for it
(``requires``: any, present, positive) and raise its product's score, largest effect first
(:func:`explain`); a recommendation without one gets the generic sentence. The effect of
a feature is its LightGBM ``pred_contrib`` averaged over a bounded sample of the day's
recommendations of the same product where the feature holds (:func:`reason_effects`;
all products together when that product has no such row). Exact per-row TreeSHAP costs
1-3 ms a row for a 250-tree model: three reasons for each of 1M customers would take
hours on two cores, the sample takes seconds. Every recommendation is then explained by a
table lookup (:func:`explain_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from pyspark.sql import Column
from pyspark.sql import functions as F

# Reasons counted before candidates exist, then the candidate rules; the order is the
# order of precedence when a candidate fails several rules.
PRE_CANDIDATE_RULES = ("inactive_product", "already_held")
CANDIDATE_RULES = ("kyc_not_valid", "age_limit", "declined_recently", "contact_limit", "no_risk_assessment", "risk_above_tolerance")
EXCLUSION_ORDER = PRE_CANDIDATE_RULES + CANDIDATE_RULES

# Columns the rules read, besides the candidate's own (age, min_age, max_age, risk_level,
# product_risk_level): added by jobs.score from campaign_responses.
DECLINED_COL = "_declined_recently"
OFFERS_COL = "_offers_in_window"


def risk_number(level: str) -> int:
    """``"R2"`` -> 2."""
    if not (isinstance(level, str) and len(level) == 2 and level[0] == "R" and level[1] in "12345"):
        raise ValueError(f"risk level must be R1..R5, got {level!r}")
    return int(level[1])


def kyc_valid(status: Column, valid_statuses: Sequence[str]) -> Column:
    """True when ``status`` (trimmed, lower case) is one of ``valid_statuses`` (lower case,
    as :class:`c360.settings.Eligibility` keeps them); false for null (never null itself)."""
    return F.coalesce(F.lower(F.trim(status)).isin(*[F.lit(s) for s in valid_statuses]), F.lit(False))


def rule_failures(max_offers: int, unassessed_max_risk: int,
                  kyc_valid_statuses: Sequence[str] = ("verified",)) -> dict[str, Column]:
    """Per candidate rule, a boolean column (never null) that is true when the rule fails."""
    age, lo, hi = F.col("age"), F.col("min_age"), F.col("max_age")
    has_limit = lo.isNotNull() | hi.isNotNull()
    in_range = (age >= F.coalesce(lo, F.lit(0))) & (age <= F.coalesce(hi, F.lit(10_000)))
    tolerance, product_risk = F.col("risk_level"), F.col("product_risk_level")
    return {
        "kyc_not_valid": ~kyc_valid(F.col("kyc_status"), kyc_valid_statuses),
        "age_limit": has_limit & ~F.coalesce(in_range, F.lit(False)),
        "declined_recently": F.coalesce(F.col(DECLINED_COL), F.lit(False)),
        "contact_limit": F.coalesce(F.col(OFFERS_COL), F.lit(0)) >= F.lit(max_offers),
        "no_risk_assessment": tolerance.isNull()
        & (product_risk.isNull() | (product_risk > F.lit(unassessed_max_risk))),
        "risk_above_tolerance": F.coalesce(tolerance.isNotNull() & (product_risk > tolerance), F.lit(False)),
    }


def exclusion_reason(failures: Mapping[str, Column]) -> Column:
    """The first failing rule in :data:`CANDIDATE_RULES` order, or null when none fails."""
    out = None
    for rule in CANDIDATE_RULES:
        out = F.when(failures[rule], F.lit(rule)) if out is None else out.when(failures[rule], F.lit(rule))
    return out


def product_value(product_code: Column, by_product: Mapping[str, float], default: float) -> Column:
    """Each product's business weight (conf ``scoring.product_value``): ``by_product`` for a
    listed code, else ``default``. A literal map lookup, no join."""
    if not by_product:
        return F.lit(float(default))
    pairs = [v for code in sorted(by_product) for v in (F.lit(code), F.lit(float(by_product[code])))]
    return F.coalesce(F.create_map(*pairs)[product_code], F.lit(float(default)))


def expected_value(score: Column, value: Column) -> Column:
    """Calibrated adoption probability times the product's value; null when ``score`` is null
    (a champion without calibration)."""
    return score * value


HOLDOUT_BUCKETS = 1_000_000  # share resolution 1e-6


def holdout(customer_id: Column, share: float, salt: str) -> Column:
    """True for a customer of the control group: ``pmod(xxhash64(salt, customer_id), 10^6)``
    below ``share`` x 10^6 (the idea of :func:`models.training.customer_bucket`, salted so
    that the group is not the training or reason sample). Deterministic: the same customer
    is in or out on every day and every engine while ``share`` and ``salt`` stay. A null id
    is never held out."""
    cut = int(round(share * HOLDOUT_BUCKETS))
    bucket = F.pmod(F.xxhash64(F.lit(salt), customer_id), F.lit(HOLDOUT_BUCKETS))
    return F.coalesce(customer_id.isNotNull() & (bucket < F.lit(cut)), F.lit(False))


def risk_band(score: Column, medium: float, high: float) -> Column:
    """``low`` / ``medium`` (from ``medium``) / ``high`` (from ``high``); null score: null."""
    return F.when(score >= F.lit(high), "high").when(score >= F.lit(medium), "medium") \
        .when(score.isNotNull(), "low")


# ---------------------------------------------------------------------------------------
# reasons

def template_key(feature: str, templates: Mapping[str, object]) -> str | None:
    """The template of ``feature``: its exact key, else the longest ``prefix*`` key it starts with."""
    if feature in templates:
        return feature
    best = None
    for key in templates:
        if key.endswith("*") and feature.startswith(key[:-1]) and (best is None or len(key) > len(best)):
            best = key
    return best


def _holds(value: object, requires: str) -> bool:
    if requires == "any":
        return True
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if requires == "present":
        return True
    if isinstance(value, str):  # a category: present is all we can say
        return True
    try:
        return float(value) > 0  # positive; True counts as 1
    except (TypeError, ValueError):
        return False


def explain(names: Sequence[str], contributions: Sequence[float], values: Sequence[object],
            templates: Mapping[str, Mapping[str, str]], generic: Mapping[str, str], per_recommendation: int = 2,
            min_contribution: float = 0.0) -> tuple[list[str], str, str]:
    """Reason codes and the zh / en text of one recommendation: the rule, one row at a
    time (:func:`explain_rows` applies it to whole batches; the tests hold the two equal).

    ``names``, ``contributions`` and ``values``: the model's features, their contribution
    to this score (the bias term excluded) and their values. A feature can be a reason
    when its contribution is above ``min_contribution``, it has a template and the
    template's ``requires`` holds for its value. The first ``per_recommendation`` of them
    are taken: templates marked ``secondary`` (e.g. the product's general popularity) after
    the others, then by decreasing contribution, ties by name. ``reason_codes`` are those
    features; their sentences (each once) make the text. Without any: ``([], generic)``.
    """
    usable = []
    for i, name in enumerate(names):
        c = float(contributions[i])
        key = template_key(name, templates) if c > min_contribution else None
        if key is not None and _holds(values[i], templates[key].get("requires", "any")):
            usable.append((bool(templates[key].get("secondary", False)), -c, name, templates[key]))
    chosen = sorted(usable, key=lambda u: u[:3])[:per_recommendation]
    return [name for _, _, name, _ in chosen], *sentences([t for _, _, _, t in chosen], generic)


def sentences(chosen: Sequence[Mapping[str, str]], generic: Mapping[str, str]) -> tuple[str, str]:
    """(zh, en) text of the chosen templates, in order, each sentence once; the generic
    sentence when none is chosen."""
    if not chosen:
        return generic["zh"], generic["en"]
    zh = list(dict.fromkeys(t["zh"] for t in chosen))
    en = list(dict.fromkeys(t["en"] for t in chosen))
    return "".join(zh), " ".join(en)


def check_templates(templates: Mapping[str, object], features: set[str], source: str = "conf/scoring.yaml") -> None:
    """Raise :class:`c360.settings.ConfigError` for a template key that matches no feature."""
    from c360.settings import ConfigError

    for key in templates:
        hit = any(f.startswith(key[:-1]) for f in features) if key.endswith("*") else key in features
        if not hit:
            close = sorted(f for f in features if f.startswith(key.rstrip("*")[:4]))[:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{source}: scoring.reasons.templates: {key!r} matches no feature{hint}")


def known_features() -> set[str]:
    """Every feature a model can use: the customer 360 and the candidate's own."""
    import features.profile  # noqa: F401 (registers the features)
    from features.candidates import PAIR_FEATURES, PRODUCT_FEATURES
    from features.registry import REGISTRY

    return set(REGISTRY) | set(PAIR_FEATURES) | set(PRODUCT_FEATURES)


def templated(names: Sequence[str], templates: Mapping[str, Mapping[str, object]]) -> list[tuple[int, str, str]]:
    """(index, feature, template key) of the features in ``names`` that have a template."""
    out = []
    for i, name in enumerate(names):
        key = template_key(name, templates)
        if key is not None:
            out.append((i, name, key))
    return out


def holds_matrix(values: np.ndarray, requires: Sequence[str], categorical: Sequence[bool]) -> np.ndarray:
    """Rows x features booleans: each feature's template ``requires`` holds for the value.

    ``values``: those features' columns of a model matrix (:func:`models.frame.matrix`:
    float64, missing NaN, a categorical as its category code); ``categorical`` flags the
    categorical ones (any category counts as positive). The same answers as :func:`_holds`
    on the raw values."""
    out = np.zeros(values.shape, dtype=bool)
    for j, (req, cat) in enumerate(zip(requires, categorical)):
        col = values[:, j]
        if req == "any":
            out[:, j] = True
        elif req == "present" or cat:
            out[:, j] = ~np.isnan(col)
        else:  # positive
            out[:, j] = np.nan_to_num(col, nan=0.0) > 0
    return out


def reason_effects(products: Sequence[str], contributions: np.ndarray, holds: np.ndarray) -> dict[str, np.ndarray]:
    """Per product (and ``"*"`` for all products together): the mean contribution of each
    templated feature over the sample rows where it holds (NaN: it never holds there).

    ``contributions`` and ``holds``: sample rows x templated features."""
    products = np.asarray(products, dtype=object)

    def means(mask: np.ndarray) -> np.ndarray:
        h = holds[mask]
        n = h.sum(axis=0)
        total = np.where(h, contributions[mask], 0.0).sum(axis=0)
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)

    out = {"*": means(np.ones(len(products), dtype=bool))}
    for p in sorted(set(products)):
        out[p] = means(products == p)
    return out


def explain_rows(products: Sequence[str], holds: np.ndarray, effects: Mapping[str, np.ndarray],
                 features: Sequence[str], templates: Mapping[str, Mapping[str, str]], generic: Mapping[str, str],
                 per_recommendation: int, min_contribution: float) -> list[tuple[list[str], str, str]]:
    """(reason codes, zh, en) per row: what :func:`explain` gives over the templated
    ``features`` with each one's effect for the row's product (the all-products effect
    where the product has none) where it holds. Vectorised: the features are ordered per
    row with one ``lexsort``, and each distinct choice of reasons is written out once."""
    n, m = holds.shape
    if n == 0:
        return []
    chosen_templates = [templates[template_key(f, templates)] for f in features]
    fallback = np.asarray(effects["*"], dtype="float64")
    prods = np.asarray(products, dtype=object)
    est = np.empty((n, m))
    for p in set(prods.tolist()):
        e = np.asarray(effects.get(p, fallback), dtype="float64")
        est[prods == p] = np.where(np.isnan(e), fallback, e)
    valid = holds & ~np.isnan(est) & (np.nan_to_num(est, nan=-np.inf) > min_contribution)
    secondary = np.array([bool(t.get("secondary", False)) for t in chosen_templates])
    name_rank = np.argsort(np.argsort(np.asarray(features, dtype=object)))
    # last key first: usable, then non-secondary, then larger effect, then name
    order = np.lexsort(np.stack([np.broadcast_to(name_rank, (n, m)), -np.where(valid, est, 0.0),
                                 np.broadcast_to(secondary, (n, m)), ~valid]), axis=-1)
    k = min(per_recommendation, m)
    picks = order[:, :k]
    used = np.take_along_axis(valid, picks, axis=1)
    code = np.zeros(n, dtype=np.int64)
    for j in range(k):
        code = code * (m + 1) + np.where(used[:, j], picks[:, j], m)
    uniq, inverse = np.unique(code, return_inverse=True)
    texts = []
    for c in uniq.tolist():
        idx = []
        for _ in range(k):
            c, r = divmod(c, m + 1)
            idx.append(r)
        idx = [i for i in reversed(idx) if i < m]
        texts.append(([features[i] for i in idx], *sentences([chosen_templates[i] for i in idx], generic)))
    return [texts[i] for i in inverse.tolist()]
