"""notebooks/segments.ipynb runs top to bottom on a small generated bank and shows the personas."""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from c360 import lake

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "segments.ipynb"
AS_OF = date(2026, 6, 30)
EARLIER = AS_OF - timedelta(days=14)
KERNEL = "c360-test-python3"


def _kernel_spec(root: Path) -> Path:
    """A kernel spec running this interpreter (the project venv), whatever is on the PATH."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "c360 (test)", "language": "python"}), encoding="utf-8")
    return root


def test_segments_notebook_runs_on_a_small_bank(spark, lake_settings, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    from c360.synth import generate
    from jobs.pipeline import run_step

    s = lake_settings
    generate(customers=200, days=21, as_of=AS_OF, seed=5, landing=s.landing)
    for step in ("ingest", "silver"):
        run_step(spark, s, step, AS_OF)
    for as_of in (EARLIER, AS_OF):
        run_step(spark, s, "profile", as_of)
        result = run_step(spark, s, "segments", as_of)
    assert result.metrics["previous_as_of"] == EARLIER.isoformat()
    personas = [r.persona_id for r in lake.read(spark, lake.table_path(s.lake, "gold", "personas"))
                .where(f"as_of_date = DATE'{AS_OF}'").collect()]
    assert personas

    monkeypatch.setenv("C360_LAKE", str(s.lake))
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_spec(tmp_path / "jupyter")))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name=KERNEL, resources={"metadata": {"path": str(REPO)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = [o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", "")
             for o in outputs]
    html = [o.get("data", {}).get("text/html", "") for o in outputs if o.output_type != "stream"]
    persona_table = next(h for h in html if "persona_name_zh" in h and "persona_name_en" in h)
    for pid in personas:
        assert pid in persona_table
    assert any(f"showing: {AS_OF}" in t for t in texts)
    assert any("value_tier" in h and "lifecycle_stage" in h and "total" in h for h in html)  # the crosstab
    assert any("image/png" in o.get("data", {}) for o in outputs)                            # the chart
    assert any(f"from {EARLIER} to {AS_OF}" in t for t in texts)                            # migration
