"""CSV that people open: cells a spreadsheet shows as text, rows that never split.

A spreadsheet (Excel, LibreOffice Calc, Google Sheets) runs a cell that starts with ``=``,
``+``, ``-`` or ``@`` as a formula, and also one that starts with a tab or a carriage
return; a value the bank delivers, such as the product name
``=HYPERLINK("http://x","click")``, would then run in the marketing team's spreadsheet
when they open the CRM drop ("CSV injection", OWASP). Every CSV file the project writes
goes through this module:

- :func:`neutralise` (text columns only): a value whose first character is one of
  ``= + - @``, tab or CR, or whose first character after leading spaces, tabs, CRs and
  LFs is one of ``= + - @`` (Calc can trim leading spaces on import), gets a leading
  ``'``, which spreadsheets take as "this cell is text" (OWASP's rule). Numeric columns
  are never touched: a negative score stays a number. The value read back from the file is
  the neutralised one (``'=HYPERLINK(...)``); a value that already starts with ``'`` is
  left as it is, so neutralising twice changes nothing.
- :func:`quote`: a field is quoted, inner quotes doubled, when it holds a comma, a quote,
  LF or CR. (Python's :mod:`csv` writer with ``lineterminator="\\n"`` leaves a lone CR
  unquoted, and readers, Python's own included, end the row there.)
- lines end with ``\\n``; UTF-8.

:func:`text_cells` is the same for an Arrow column (vectorised: the CRM export writes
millions of rows), :func:`line` for one row of already formatted cells, and
:func:`write_frame` for a small pandas table (MLflow artifacts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

# Starts like a formula: = + - @ first (possibly after spaces, tabs, CRs, LFs), or a tab or CR first.
_FORMULA = r"[\t\r]|[ \t\r\n]*[=+\-@]"
_FORMULA_RE = re.compile(_FORMULA)
_NEEDS_QUOTES = '[",\n\r]'
_NEEDS_QUOTES_RE = re.compile(_NEEDS_QUOTES)


def neutralise(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would read it as a formula."""
    return "'" + text if _FORMULA_RE.match(text) else text


def quote(text: str) -> str:
    """One CSV field: quoted (quotes doubled) when it holds a comma, a quote, LF or CR."""
    return '"' + text.replace('"', '""') + '"' if _NEEDS_QUOTES_RE.search(text) else text


def line(cells: Iterable[str | None]) -> str:
    """One CSV line of formatted cells (None is empty), each quoted as needed, ending in ``\\n``."""
    return ",".join("" if c is None else quote(c) for c in cells) + "\n"


def text_cells(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A text column's CSV fields, vectorised: :func:`neutralise` then :func:`quote`; null is empty."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    col = pc.if_else(pc.match_substring_regex(col, "^(?:" + _FORMULA + ")"),
                     pc.binary_join_element_wise("'", col, ""), col)
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(col, _NEEDS_QUOTES), quoted, col).fill_null("")


def write_frame(df, path: Path | str) -> None:
    """Write a (small) pandas DataFrame as CSV with a header: text cells neutralised and
    quoted as above, numbers as Python writes them (floats as ``repr``), missing values empty."""
    import pandas as pd

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and v != v) or v is pd.NaT:
            return ""
        if isinstance(v, str):
            return neutralise(v)
        return repr(float(v)) if isinstance(v, float) else str(v)

    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(line(neutralise(str(c)) for c in df.columns))
        for row in df.itertuples(index=False, name=None):
            f.write(line(cell(v) for v in row))


__all__ = ["neutralise", "quote", "line", "text_cells", "write_frame"]
