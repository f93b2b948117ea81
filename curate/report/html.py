"""HTML building blocks: escaping, tables, chips, and the page shell with inline CSS.

Every value that comes from data goes through :func:`esc` (``html.escape`` with
quotes). Code that builds trusted markup wraps it in :class:`Markup`, so a helper
can tell markup from data and never escapes twice or forgets to escape.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from curate.report.palette import reason_color, reason_colors, reason_help


class Markup(str):
    """A string of trusted HTML, built by this package from escaped parts.

    Adding anything to Markup escapes the other operand, so ``Markup + data`` stays safe.
    """

    def __add__(self, other: object) -> Markup:
        return Markup(str.__add__(self, esc(other)))

    def __radd__(self, other: object) -> Markup:
        return Markup(str.__add__(esc(other), self))


def esc(value: Any) -> Markup:
    """Escape any value for HTML text or a quoted attribute; Markup passes through."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    """Concatenate parts, escaping those that are not Markup."""
    return Markup(sep.join(esc(p) for p in parts))


def tag(name: str, content: Any = "", **attrs: Any) -> Markup:
    """``<name attrs>content</name>`` with escaped attribute values and content."""
    attr = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None
    )
    return Markup(f"<{name}{attr}>{esc(content)}</{name}>")


def fmt_int(n: Any) -> str:
    return "" if n is None else f"{int(n):,}"


def fmt_pct(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * float(x):.{digits}f}%"


def fmt_num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        return f"{x:.{digits}g}" if 0 < abs(x) < 1e-3 else f"{x:.{digits}f}"
    return str(x)


def table(
    header: Sequence[Any], rows: Iterable[Sequence[Any]], *, cls: str = "", numeric_from: int = 1
) -> Markup:
    """A table; columns from ``numeric_from`` on are right-aligned."""
    head = "".join(
        f"<th{' class=num' if i >= numeric_from else ''}>{esc(h)}</th>"
        for i, h in enumerate(header)
    )
    thead = f"<thead><tr>{head}</tr></thead>" if any(str(h) for h in header) else ""
    body = []
    for row in rows:
        cells = "".join(
            f"<td{' class=num' if i >= numeric_from else ''}>{esc(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return Markup(f'<table class="{esc(cls)}">{thead}<tbody>{"".join(body)}</tbody></table>')


def chip(code: str) -> Markup:
    """A coloured label for a reason code."""
    return Markup(
        f'<span class="chip" style="background:{reason_color(code)}" '
        f'title="{esc(reason_help(code))}">{esc(code)}</span>'
    )


def chips(reason: Any) -> Markup:
    if reason is None or (isinstance(reason, float) and math.isnan(reason)) or not str(reason):
        return chip("kept")
    return join(chip(p.strip()) for p in str(reason).split(";") if p.strip())


def note(text: Any) -> Markup:
    return tag("p", text, class_="note")


def banner(text: Any, level: str = "red") -> Markup:
    return tag("div", text, class_=f"banner {level}")


def figure(uri: str, alt: str) -> Markup:
    if not uri.startswith("data:"):
        raise ValueError("figures must be embedded as data: URIs")
    return Markup(f'<img class="fig" src="{esc(uri)}" alt="{esc(alt)}">')


def section(anchor: str, title: str, body: Sequence[Any]) -> Markup:
    return Markup(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{join(body)}</section>')


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:#1d1d1f;background:#f6f7f9}
header{background:#22313f;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px}
header .sub{color:#c9d3dd;font-size:13px;word-break:break-all}
nav{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #dde1e6;padding:6px 28px}
nav a{margin-right:16px;color:#22517f;text-decoration:none;font-weight:600}
main{max-width:1180px;margin:0 auto;padding:8px 28px 40px}
section{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:14px 20px;margin:16px 0}
h2{font-size:19px;margin:4px 0 10px;border-bottom:2px solid #eef0f3;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
h4{font-size:13px;margin:12px 0 4px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border-bottom:1px solid #e6e8eb;padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f0f2f5}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv td:first-child{color:#555;white-space:nowrap}
table.kv td{max-width:760px;overflow-wrap:anywhere}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0}
.card{background:#f0f4f8;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:22px}
.card span{color:#555;font-size:12px}
.banner{border-radius:6px;padding:10px 14px;margin:8px 0;font-weight:600}
.banner.red{background:#fde2e1;color:#8a1212;border:2px solid #d62728}
.banner.amber{background:#fff4d6;color:#6b4a00;border:1px solid #e0b000}
.note{color:#555;font-style:italic}
img.fig{max-width:100%;height:auto;display:block;margin:6px 0}
.chip{display:inline-block;color:#fff;border-radius:10px;padding:0 8px;margin:1px 2px;font-size:12px}
.grid{overflow-x:auto}
.tuple{display:flex;gap:10px;align-items:flex-start;border-bottom:1px solid #eee;padding:8px 0}
.tuples{display:grid;grid-template-columns:repeat(auto-fill,minmax(500px,1fr));column-gap:24px}
.tuple .meta{flex:0 0 150px;font-size:12px}
.thumb{width:104px;font-size:11px;text-align:center;overflow-wrap:anywhere}
.thumb img,.thumb .missing{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;
 background:#eee;border-radius:4px;display:block;margin:0 auto}
.thumb .missing{display:flex;align-items:center;justify-content:center;color:#888;padding:4px}
.thumb .role{font-weight:600;color:#333}
.thumb .path{color:#666}
.wall{display:flex;flex-wrap:wrap;gap:10px}
.pair{display:flex;gap:4px;padding:2px;border:1px dashed #ccc;border-radius:6px}
td.heat{min-width:64px}
details summary{cursor:pointer;color:#22517f}
footer{color:#777;font-size:12px;text-align:center;padding:10px}
kbd{border:1px solid #bbb;border-bottom-width:2px;border-radius:3px;padding:0 4px;font-size:12px;background:#fafafa}
.keys{font-size:12px;color:#444}
code{white-space:nowrap;font-size:13px}
.rv-bar{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:center;margin:8px 0;font-size:13px}
.rv-bar select,.rv-bar input{font-size:13px;max-width:220px}
.rv-progress{font-weight:600;margin:4px 0}
.rv-list{position:relative;height:70vh;min-height:320px;overflow-y:auto;border:1px solid #dde1e6;
 border-radius:6px;background:#fafbfc;outline:none}
.rv-list:focus{border-color:#22517f}
.rv-spacer{position:relative}
.rv-card{position:absolute;width:220px;height:254px;margin:4px;padding:6px;background:#fff;
 border:2px solid #e1e4e8;border-radius:6px;font-size:12px;overflow:hidden}
.rv-card.rv-cur{box-shadow:0 0 0 3px #22517f}
.rv-card.rv-keep{border-color:#2ca02c}.rv-card.rv-drop{border-color:#d62728;background:#fdf0f0}
.rv-card.rv-relabel{border-color:#1f77b4;background:#eef5fb}
.rv-img{height:96px;display:flex;justify-content:center}
.rv-img img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;background:#eee;border-radius:4px}
.rv-img .missing{width:96px;height:96px;background:#f0f0f0;color:#888;display:flex;align-items:center;
 justify-content:center;text-align:center;border-radius:4px;font-size:11px}
.rv-path{color:#666;white-space:nowrap;overflow:hidden}
.rv-card>div.rv-chips{height:38px;overflow:hidden;white-space:normal;line-height:18px}
.rv-card>div{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;height:17px}
.rv-card>div.rv-img{height:98px}.rv-card>div.rv-acts{height:24px}.rv-id{color:#555}
.rv-acts{display:flex;gap:3px;margin-top:3px}.rv-acts select{max-width:80px;font-size:11px}
.rv-acts button{font-size:11px;padding:1px 4px}
.rv-state{font-weight:600;color:#22517f}
"""


def css() -> str:
    rules = [_CSS]
    for code, color in reason_colors().items():
        rules.append(f".c-{code}{{color:{color}}}")
    return "".join(rules)


# No network, no script: the browser refuses anything that is not inline or data:.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def script_hash(source: str) -> str:
    """The CSP source that allows exactly this inline script: ``'sha256-<base64>'``."""
    return (
        "'sha256-"
        + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")
        + "'"
    )


def csp(script_hashes: Sequence[str] = ()) -> str:
    """:data:`CSP`, plus ``script-src`` allowing exactly the inline scripts of these hashes
    (``'sha256-...'``); never ``'unsafe-inline'``."""
    if not script_hashes:
        return CSP
    if any(not (h.startswith("'sha256-") and h.endswith("'")) for h in script_hashes):
        raise ValueError("scripts are allowed by their sha256 only")
    return f"{CSP}; script-src {' '.join(script_hashes)}"


def page(
    title: str,
    header: Markup,
    nav: Sequence[tuple[str, str]],
    body: Sequence[Markup],
    footer: str,
    scripts: Sequence[str] = (),
) -> str:
    """The whole document. ``scripts`` are inlined at the end of the body and allowed by
    their sha256 in the Content-Security-Policy (nothing else can run)."""
    if any("</script" in s.lower() for s in scripts):
        raise ValueError("an inline script cannot contain </script")
    links = join(Markup(f'<a href="#{esc(a)}">{esc(t)}</a>') for a, t in nav)
    policy = csp([script_hash(s) for s in scripts])
    tail = "".join(f"<script>{s}</script>" for s in scripts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{css()}</style></head><body>"
        f"{header}<nav>{links}</nav><main>{join(body)}</main>"
        f"<footer>{esc(footer)}</footer>{tail}</body></html>\n"
    )
