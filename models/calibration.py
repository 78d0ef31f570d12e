"""Calibrated adoption probabilities: a monotone map from a model's raw score, kept as data.

The next-best-product model's raw score is a lambdarank score (ranker) or a pooled
probability fitted on down-sampled negatives (binary); neither is the probability that the
customer opens the product within the horizon. :func:`models.nbp.train` fits that map on
the out-of-time snapshot, whichever kind wins, by isotonic regression (scikit-learn's
``IsotonicRegression``, increasing, ``y`` within [0, 1]):

1. the OOT raw scores are cut into :data:`FIT_BINS` equal-width bins in the engine and each
   bin comes to the driver as (mean raw score, rows, adoptions) (:func:`score_points`);
2. the isotonic fit of the bins' adoption rates on their mean scores, weighted by rows,
   gives the breakpoints ``x`` (raw scores, strictly increasing) and ``y`` (probabilities,
   non-decreasing, within [0, 1]) (:func:`fit_isotonic`).

The map is the breakpoints, never code: :meth:`Calibration.to_json` writes them (with how
they were fitted) as the run artifact :data:`ARTIFACT`, whose SHA-256 the registry records
on the model version and checks when the champion is loaded (:mod:`models.registry`). A
score between two breakpoints is interpolated linearly; below the first or above the last
it takes that breakpoint's ``y``; a null score stays null. :meth:`Calibration.apply` does it
in numpy, :func:`calibrated` as a Spark column expression (a balanced ``CASE`` tree of
depth log2(breakpoints)); the results are the same.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

FORMAT = "c360.calibration.isotonic.v1"
ARTIFACT = "calibration.json"  # run artifact of a next-best-product version
FIT_BINS = 1000                # equal-width raw-score bins of the OOT rows, the fit's input


class CalibrationError(ValueError):
    """A calibration map that cannot be used: not the expected format, not monotone, outside [0, 1]."""


@dataclass(frozen=True)
class Calibration:
    """Breakpoints of a monotone piecewise-linear map from raw score to probability.

    ``x``: raw scores, finite, strictly increasing; ``y``: probabilities in [0, 1],
    non-decreasing; at least one point. ``fitted_on``: how the map was fitted (recorded,
    not used to apply it)."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    fitted_on: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        if len(x) == 0 or len(x) != len(y):
            raise CalibrationError(f"calibration needs as many x as y breakpoints, at least one (got {len(x)}, "
                                   f"{len(y)})")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (*x, *y)):
            raise CalibrationError("calibration breakpoints must be finite numbers")
        if any(b <= a for a, b in zip(x, x[1:])):
            raise CalibrationError("calibration x breakpoints must be strictly increasing")
        if any(b < a for a, b in zip(y, y[1:])):
            raise CalibrationError("calibration y values must be non-decreasing (the map is monotone)")
        if y[0] < 0 or y[-1] > 1:
            raise CalibrationError("calibration y values must lie within [0, 1]")

    def to_json(self) -> str:
        """The artifact text: the same bytes for the same map (sorted keys, ``repr`` floats)."""
        doc = {"format": FORMAT, "method": "isotonic", "x": [float(v) for v in self.x],
               "y": [float(v) for v in self.y], "fitted_on": self.fitted_on}
        return json.dumps(doc, sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        """Parse and check an artifact text; :class:`CalibrationError` says what is wrong."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"calibration is not JSON ({exc.msg})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise CalibrationError(f"calibration format is not {FORMAT}")
        x, y = doc.get("x"), doc.get("y")
        if not (isinstance(x, list) and isinstance(y, list)):
            raise CalibrationError("calibration x and y must be lists")
        fitted = doc.get("fitted_on") if isinstance(doc.get("fitted_on"), dict) else {}
        return cls(tuple(x), tuple(y), fitted)

    def apply(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Probabilities of raw ``scores`` (NaN stays NaN)."""
        s = np.asarray(scores, dtype="float64")
        return np.clip(np.interp(s, np.asarray(self.x), np.asarray(self.y)), 0.0, 1.0)


def fit_isotonic(scores: Sequence[float], labels: Sequence[float], weights: Sequence[float] | None = None,
                 fitted_on: dict | None = None) -> Calibration:
    """The isotonic map of ``labels`` (0/1, or adoption rates of bins) on raw ``scores``,
    weighted by ``weights`` (rows of each bin); its breakpoints are scikit-learn's
    thresholds, so :meth:`Calibration.apply` gives what its ``predict`` gives."""
    from sklearn.isotonic import IsotonicRegression

    x = np.asarray(scores, dtype="float64")
    if x.size == 0:
        raise CalibrationError("no scored rows to fit a calibration on")
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(x, np.asarray(labels, dtype="float64"), sample_weight=None if weights is None else
            np.asarray(weights, dtype="float64"))
    xs, ys = iso.X_thresholds_.tolist(), np.clip(iso.y_thresholds_, 0.0, 1.0).tolist()
    return Calibration(tuple(xs), tuple(ys), dict(fitted_on or {}))


def score_points(scored: DataFrame, score: str, label: str = "label", bins: int = FIT_BINS) -> pd.DataFrame:
    """(``score``: mean raw score, ``rows``, ``positives``) per equal-width bin of the
    non-null ``score`` values, in the engine (at most ``bins`` rows come back), by score."""
    s = F.col(score)
    rows = scored.where(s.isNotNull())
    lim = rows.agg(F.min(s).alias("lo"), F.max(s).alias("hi")).first()
    if lim["lo"] is None:
        return pd.DataFrame({"score": pd.Series(dtype="float64"), "rows": pd.Series(dtype="int64"),
                             "positives": pd.Series(dtype="int64")})
    lo, hi = float(lim["lo"]), float(lim["hi"])
    b = F.least(F.floor((s - F.lit(lo)) / F.lit((hi - lo) / bins)), F.lit(bins - 1)) if hi > lo else F.lit(0)
    out = rows.groupBy(b.cast("int").alias("_bin")).agg(
        F.avg(s).alias("score"), F.count(F.lit(1)).alias("rows"),
        F.sum(F.col(label).cast("long")).alias("positives")).orderBy("_bin").toPandas()
    return out.drop(columns="_bin").astype({"score": "float64", "rows": "int64", "positives": "int64"})


def fit_points(points: pd.DataFrame, fitted_on: dict | None = None) -> Calibration:
    """:func:`fit_isotonic` on the bins of :func:`score_points` (rate = positives / rows)."""
    p = points[points["rows"] > 0]
    return fit_isotonic(p["score"], p["positives"] / p["rows"], p["rows"], fitted_on)


def calibrated(score: Column, cal: Calibration) -> Column:
    """The probability of a raw ``score`` column (null stays null), as a Spark expression:
    what :meth:`Calibration.apply` computes, without Python in the engine."""
    x, y = cal.x, cal.y

    def segment(i: int) -> Column:  # the line from breakpoint i to i + 1
        slope = (y[i + 1] - y[i]) / (x[i + 1] - x[i])
        return F.lit(float(y[i])) + (score - F.lit(float(x[i]))) * F.lit(float(slope))

    def tree(lo: int, hi: int) -> Column:  # score within [x[lo], x[hi]]: segments lo .. hi - 1
        if hi - lo == 1:
            return segment(lo)
        mid = (lo + hi) // 2
        return F.when(score <= F.lit(float(x[mid])), tree(lo, mid)).otherwise(tree(mid, hi))

    inner = F.when(score <= F.lit(float(x[0])), F.lit(float(y[0]))) \
        .when(score >= F.lit(float(x[-1])), F.lit(float(y[-1])))
    if len(x) > 1:
        inner = inner.otherwise(tree(0, len(x) - 1))
    # clipped against rounding (greatest and least skip nulls, hence the null case first)
    return F.when(score.isNull(), F.lit(None).cast("double")) \
        .otherwise(F.least(F.greatest(inner, F.lit(0.0)), F.lit(1.0)))


__all__ = ["Calibration", "CalibrationError", "fit_isotonic", "fit_points", "score_points", "calibrated",
           "ARTIFACT", "FORMAT", "FIT_BINS"]
