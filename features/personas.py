"""Personas (客群画像): one per behavioural cluster, named in Chinese and English.

- **Distinguishing features**: a cluster's centroid in standardised units is, per feature,
  the difference of the cluster mean from the population mean in standard deviations (z).
  The features with the largest |z| (at least ``min_abs_z``, at most ``top_features``)
  describe the cluster, each through its phrase in ``conf/segments.yaml``
  (``personas.phrases``: high and low phrase, zh and en).
- **Names**: the phrases of the two most distinguishing features ("数字活跃·财富型" /
  "Digitally active · Wealth holders"), extended by the next feature, then the persona
  id, when two personas would share a name.
- **Stable ids**: the new clusters are matched to the personas of the previous as_of by
  the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on the distance of
  their centroids: both sets of centroids, kept in transformed but unscaled units, are
  standardised with this run's means and standard deviations, and the distance is the
  root mean square of the per-feature differences (in standard deviations) over the
  features both runs used. A pair under ``match_max_distance`` keeps the old id; any
  other cluster gets a new id, numbered after the highest id ever issued (a retired id
  is never reused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass
class Match:
    persona_id: str
    previous_id: str | None  # the previous persona it continues, or None when new
    distance: float | None   # RMS standardised centroid distance to that persona


def _number(persona_id: str) -> int:
    m = re.search(r"(\d+)$", persona_id or "")
    return int(m.group(1)) if m else 0


def format_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:02d}"


def centroid_distances(new_raw: np.ndarray, new_features: list[str], previous: list[dict],
                       means: list[float], stds: list[float]) -> np.ndarray:
    """RMS standardised distance between every new centroid (rows) and previous persona
    (columns), over the features both share; inf when they share none."""
    k = len(new_raw)
    cost = np.full((k, len(previous)), np.inf)
    pos = {f: i for i, f in enumerate(new_features)}
    mu, sd = np.asarray(means, dtype=float), np.asarray(stds, dtype=float)
    for j, p in enumerate(previous):
        common = [(pos[f], i) for i, f in enumerate(p["centroid_features"]) if f in pos]
        if not common:
            continue
        ni = [a for a, _ in common]
        pi = [b for _, b in common]
        old = (np.asarray(p["centroid"], dtype=float)[pi] - mu[ni]) / sd[ni]
        new = (np.asarray(new_raw, dtype=float)[:, ni] - mu[ni]) / sd[ni]
        cost[:, j] = np.sqrt(((new - old) ** 2).mean(axis=1))
    return cost


def match_personas(new_raw: np.ndarray, new_features: list[str], means: list[float], stds: list[float],
                   previous: list[dict], used_ids: set[str], prefix: str, max_distance: float) -> list[Match]:
    """Persona ids for the new clusters (in cluster order).

    ``previous``: the personas of the previous as_of, each with ``persona_id``,
    ``centroid`` (transformed units) and ``centroid_features``. ``used_ids``: every id
    issued so far (new ids are numbered after the highest)."""
    k = len(new_raw)
    out: list[Match | None] = [None] * k
    if previous:
        from scipy.optimize import linear_sum_assignment

        cost = centroid_distances(new_raw, new_features, previous, means, stds)
        finite = np.where(np.isfinite(cost), cost, 1e12)
        rows, cols = linear_sum_assignment(finite)
        for r, c in zip(rows, cols):
            if cost[r, c] <= max_distance:
                out[r] = Match(previous[c]["persona_id"], previous[c]["persona_id"], float(cost[r, c]))
    nxt = max([_number(i) for i in used_ids | {p["persona_id"] for p in previous}] or [0]) + 1
    for r in range(k):
        if out[r] is None:
            out[r] = Match(format_id(prefix, nxt), None, None)
            nxt += 1
    return out  # type: ignore[return-value]


def distinguishing(z: np.ndarray, features: list[str], phrases: dict, top: int, min_abs_z: float,
                   cluster_means: np.ndarray | None = None, population_means: np.ndarray | None = None) -> list[dict]:
    """The most distinguishing features of one cluster, largest |z| first."""
    order = sorted(range(len(features)), key=lambda i: (-abs(float(z[i])), i))
    out = []
    for i in order:
        if abs(float(z[i])) < min_abs_z or len(out) >= top:
            break
        f = features[i]
        ph = phrases[f]
        high = float(z[i]) > 0
        item = {"feature": f, "z": round(float(z[i]), 3), "direction": "high" if high else "low",
                "phrase_zh": ph["high_zh"] if high else ph["low_zh"], "phrase_en": ph["high_en"] if high else ph["low_en"],
                "label_zh": ph["label_zh"], "label_en": ph["label_en"]}
        if cluster_means is not None and population_means is not None:
            item["cluster_mean"] = round(float(cluster_means[i]), 4)
            item["population_mean"] = round(float(population_means[i]), 4)
        out.append(item)
    return out


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def persona_names(features_by_persona: list[list[dict]], ids: list[str], conf: dict) -> list[tuple[str, str]]:
    """(name_zh, name_en) per persona: two top phrases, made unique across personas."""
    def name(feats: list[dict], n: int) -> tuple[str, str]:
        if not feats:
            return conf["default_name_zh"], conf["default_name_en"]
        use = feats[:n]
        return "·".join(f["phrase_zh"] for f in use), " · ".join(_cap(f["phrase_en"]) for f in use)

    n_used = [min(2, max(1, len(f))) for f in features_by_persona]
    names = [name(f, n) for f, n in zip(features_by_persona, n_used)]
    for _ in range(10):
        dup = {nm for nm in names if names.count(nm) > 1}
        if not dup:
            break
        for i, nm in enumerate(names):
            if nm in dup:
                if n_used[i] < len(features_by_persona[i]):
                    n_used[i] += 1
                    names[i] = name(features_by_persona[i], n_used[i])
                else:
                    names[i] = (f"{nm[0]}（{ids[i]}）", f"{nm[1]} ({ids[i]})")
    return names


def _money_zh(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v / 10000:,.1f}万元" if abs(v) >= 10000 else f"{v:,.0f}元"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def persona_descriptions(feats: list[dict], size: int, share: float, kpis: dict) -> tuple[str, str]:
    """(description_zh, description_en) from the distinguishing features and the KPIs."""
    if feats:
        zh_f = "、".join(f"{f['phrase_zh']}（{f['label_zh']}{'高于' if f['z'] > 0 else '低于'}平均"
                         f"{abs(f['z']):.1f}个标准差）" for f in feats)
        en_f = "; ".join(f"{f['phrase_en']} ({f['label_en']} {abs(f['z']):.1f} sd "
                         f"{'above' if f['z'] > 0 else 'below'} average)" for f in feats)
        zh = f"占客户总数的{_pct(share)}（{size:,}人）。主要特征：{zh_f}。"
        en = f"{_pct(share)} of customers ({size:,}). Stands out for: {en_f}."
    else:
        zh = f"占客户总数的{_pct(share)}（{size:,}人）。各项行为特征接近全体客户平均水平。"
        en = f"{_pct(share)} of customers ({size:,}). Close to the average customer on every behavioural feature."
    aum, nps, churn, dig = kpis.get("aum_avg"), kpis.get("nps"), kpis.get("churn_rate"), kpis.get("digital_share")
    nps_txt = "—" if nps is None else f"{nps:+.0f}"  # NPS points; null: no or too few respondents
    zh += f"户均资产{_money_zh(aum)}，净推荐值NPS {nps_txt}，数字渠道活跃率{_pct(dig)}，流失率{_pct(churn)}。"
    en += (f" Average AUM CNY {aum:,.0f}" if aum is not None else " Average AUM —") + \
        f", NPS {nps_txt}, digitally active {_pct(dig)}, churn rate {_pct(churn)}."
    return zh, en
