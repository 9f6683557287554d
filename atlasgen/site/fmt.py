"""Number formatting with fixed precision, so output bytes never depend on float noise."""

from __future__ import annotations

import json
import math
import re


def fmt_num(x: float, digits: int = 3) -> str:
    """``digits`` significant digits, plain notation for everyday magnitudes."""
    x = float(x)
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0)
        s = f"{x:.{decimals}f}"
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        return s
    return f"{x:.{digits - 1}e}"


def fmt_signed(x: float, digits: int = 3) -> str:
    """Like fmt_num with an explicit + for positive values (weights)."""
    s = fmt_num(x, digits)
    return s if s.startswith("-") or s == "0" else "+" + s


def fmt_pct(fraction: float) -> str:
    """A fraction as a percentage: 0.0123 -> '1.23%'."""
    f = float(fraction)
    if f <= 0:
        return "0%"
    if f < 1e-4:
        return "<0.01%"
    return fmt_num(100 * f, 3) + "%"


def fmt_count(n: int) -> str:
    """Integer with thin separators: 16384 -> '16,384'."""
    return f"{int(n):,}"


def json_num(x: float, digits: int = 6) -> float | None:
    """A float rounded to fixed precision for JSON (None for NaN/inf)."""
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def dumps(obj, *, indent: int | None = None) -> str:
    """Deterministic JSON: sorted keys, no NaN, compact unless ``indent``."""
    separators = (",", ":") if indent is None else (",", ": ")
    return json.dumps(
        obj, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=separators, indent=indent
    )


def js_global(name: str, obj) -> str:
    """A classic script assigning ``obj`` to ``window[name]`` (works from file://)."""
    # "</" is escaped so the payload can also be inlined in a <script> element.
    payload = dumps(obj).replace("</", "<\\/")
    return f"window.{name} = {payload};\n"


def bibtex_escape(text: str) -> str:
    """``text`` with BibTeX's special characters escaped."""
    return re.sub(
        r"([\\{}&%$#_^~])",
        lambda mt: {"\\": r"\textbackslash{}", "^": r"\^{}", "~": r"\~{}"}.get(
            mt.group(1), "\\" + mt.group(1)
        ),
        text,
    )


_VERBATIM = re.compile(r"(<pre\b.*?</pre>|<textarea\b.*?</textarea>)", re.S)
_INDENT = re.compile(r"\n[ \t]+(?=<|\Z)")  # \Z: the indentation before a <pre>
_BLANK = re.compile(r"\n\s*\n")


def compact_html(html: str) -> str:
    """``html`` without the templates' indentation before a tag at the start of a line, nor blank lines
    (the size budget: about 0.7 KB of a feature page), outside ``<pre>`` and ``<textarea>``. Browsers
    render the same page: whitespace between tags collapses to one space, and a line break is kept."""
    parts = _VERBATIM.split(html)
    for i in range(0, len(parts), 2):
        parts[i] = _BLANK.sub("\n", _INDENT.sub("\n", parts[i]))
    return "".join(parts)
