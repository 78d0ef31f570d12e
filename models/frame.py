"""The model input contract shared by training and scoring.

A :class:`FeatureSpec` lists the numeric columns and the categorical columns with their
categories (fixed at training time). It is saved with every model (``feature_spec.json``
artifact), and scoring rebuilds exactly the same pandas frame from it, so category codes
can never shift between training and scoring. Unknown categories at scoring become NaN,
which LightGBM treats as missing.

``ownership`` lists the product codes of the customer ownership vector the model was
trained with (:func:`features.candidates.ownership_columns` names their columns): scoring
builds exactly those columns, whatever the catalogue holds then (a code it no longer has is
a column of 0, a new product gets none).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

# Identifiers, labels and text never used as model inputs.
NOT_FEATURES = {"customer_id", "as_of_date", "snapshot_date", "label", "product_name", "tags", "account_id",
                "city", "home_branch_id", "occupation", "active"}
# Low-cardinality strings used as categorical inputs when present.
CATEGORICAL = ("product_code", "family", "age_band", "income_band", "gender", "risk_tolerance", "nps_category",
               "preferred_language", "kyc_status")


@dataclass
class FeatureSpec:
    numeric: list[str]
    categorical: dict[str, list[str]] = field(default_factory=dict)
    ownership: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return self.numeric + list(self.categorical)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "FeatureSpec":
        d = json.loads(text)
        return cls(numeric=list(d["numeric"]), categorical={k: list(v) for k, v in d["categorical"].items()},
                   ownership=list(d.get("ownership", [])))  # absent in specs saved before it existed


def fit_spec(sample: pd.DataFrame, schema_types: dict[str, str] | None = None) -> FeatureSpec:
    """Decide the model columns from a training sample (pandas).

    Numeric and boolean columns are numeric inputs; :data:`CATEGORICAL` strings are
    categorical with the categories seen in the sample (sorted); every other string column
    and :data:`NOT_FEATURES` are left out.
    """
    numeric, categorical = [], {}
    for c in sample.columns:
        if c in NOT_FEATURES:
            continue
        s = sample[c]
        if c in CATEGORICAL:
            categorical[c] = sorted(str(v) for v in s.dropna().unique())
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            numeric.append(c)
        elif s.dtype == object and s.dropna().map(lambda v: isinstance(v, (bool, int, float))).all() \
                and s.notna().any():
            numeric.append(c)  # nullable booleans/ints arrive as object
    return FeatureSpec(numeric=numeric, categorical=categorical)


def _as_float(col: pd.Series) -> np.ndarray:
    """float64 values of a numeric, boolean or object (None/bool/int/Decimal) column."""
    if col.dtype == object:
        values = col.to_numpy(dtype=object)
        missing = pd.isna(values)
        out = np.full(len(values), np.nan)
        out[~missing] = values[~missing].astype("float64")
        return out
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def prepare(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The model frame: numeric columns as float64 (missing -> NaN), categoricals with the
    spec's fixed categories, in the spec's column order. Missing columns become NaN.

    Vectorised (no per-value Python): scoring calls it on every batch of millions of rows."""
    numeric = np.full((len(df), len(spec.numeric)), np.nan)
    for i, c in enumerate(spec.numeric):
        if c in df.columns:
            numeric[:, i] = _as_float(df[c])
    out = pd.DataFrame(numeric, columns=list(spec.numeric), index=df.index)
    for c, cats in spec.categorical.items():
        if c in df.columns:
            values = df[c].astype("object")
            values = values.where(values.isna(), values.astype(str))
        else:
            values = pd.Series([None] * len(df), index=df.index, dtype="object")
        out[c] = pd.Categorical(values, categories=cats)
    return out


def matrix(batch, spec: FeatureSpec) -> np.ndarray:
    """The model input of an Arrow record batch (or table) as one float64 matrix in the
    spec's column order: numeric columns cast to float64 (null -> NaN), categorical columns
    as their code in the spec's categories (unknown or null -> NaN), absent columns NaN.

    LightGBM gives the same predictions for it as for :func:`prepare`'s frame (a pandas
    categorical reaches LightGBM as exactly these codes), without the Arrow -> pandas
    conversion: the engine's scoring functions (``mapInArrow``) call it on every batch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = set(batch.schema.names)
    # column-major: each column is one contiguous write (LightGBM reads either order)
    out = np.full((batch.num_rows, len(spec.numeric) + len(spec.categorical)), np.nan, order="F")
    for i, c in enumerate(spec.numeric):
        if c in names:
            col = batch.column(c)
            if col.type != pa.float64():
                col = pc.cast(col, pa.float64())
            out[:, i] = col.to_numpy(zero_copy_only=False)
    for j, (c, cats) in enumerate(spec.categorical.items(), start=len(spec.numeric)):
        if c in names and cats:
            col = batch.column(c)
            if not pa.types.is_string(col.type):
                col = pc.cast(col, pa.string())
            codes = pc.index_in(col, value_set=pa.array(cats, pa.string()))
            out[:, j] = pc.cast(codes, pa.float64()).to_numpy(zero_copy_only=False)
    return out
