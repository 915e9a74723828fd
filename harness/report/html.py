"""Aggregated rows → one self-contained HTML leaderboard per suite (``harness report --html``).

The same rows as the markdown report (:func:`harness.report.aggregate.aggregate`), formatted by
the same cell functions (:mod:`harness.report.markdown`). The page needs nothing but itself: its
CSS and JavaScript are inline and each pair's Pareto plot is inline SVG, so it opens offline and
can be mailed or attached to a CI run. Tables sort by a click on a column header and filter by
the text typed above them; every mark explains itself on hover; a point of a Pareto plot shows
its strategy, score and cost on hover and lights up its row.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path

from harness.report.aggregate import GAIN_BASELINES, PARETO_COST, Row
from harness.report.markdown import DASH, MARKS, ci, gain, legend, marks, metric_order, notes, num, pct, seeds
from harness.report.stats import Summary

MARK_MEANING = dict(MARKS)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#1b1f24;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.legend{color:#57606a;font-size:.9em}
table{border-collapse:collapse;width:100%;margin:.5em 0 1em}
th,td{padding:4px 8px;border-bottom:1px solid #e5e8eb;text-align:right;white-space:nowrap}
th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}
th{cursor:pointer;user-select:none;background:#f6f8fa;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.tied td:nth-child(3){font-weight:600}tr.hl td{background:#fff5b1}
.mark{cursor:help;color:#9a6700;margin-left:2px}
input.filter{padding:4px 8px;width:20em;border:1px solid #d0d7de;border-radius:4px}
.plot{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}
svg circle{cursor:pointer}svg circle.front{fill:#0969da}svg circle.other{fill:#8c959f}
svg circle.hl{stroke:#d4a72c;stroke-width:3}
#tip{position:fixed;pointer-events:none;background:#1b1f24;color:#fff;padding:4px 8px;border-radius:4px;font-size:12px;display:none}
"""

JS = """
(function(){
  function key(td){var v=td.getAttribute('data-sort');if(v===null)v=td.textContent.trim();
    var n=parseFloat(v);return (v!==''&&!isNaN(n)&&isFinite(v))?n:v.toLowerCase();}
  document.querySelectorAll('table.board').forEach(function(table){
    var ths=table.querySelectorAll('thead th');
    ths.forEach(function(th,i){th.addEventListener('click',function(){
      var asc=th.getAttribute('aria-sort')!=='ascending';
      ths.forEach(function(o){o.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
        if(x===''&&y!=='')return 1;if(y===''&&x!=='')return -1;
        if(typeof x!==typeof y){x=String(x);y=String(y);}
        return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(function(r){body.appendChild(r);});});});
  });
  document.querySelectorAll('input.filter').forEach(function(input){
    input.addEventListener('input',function(){
      var q=input.value.trim().toLowerCase(),table=document.getElementById(input.getAttribute('data-table'));
      Array.prototype.forEach.call(table.tBodies[0].rows,function(r){
        r.style.display=(!q||r.textContent.toLowerCase().indexOf(q)>=0)?'':'none';});});
  });
  var tip=document.getElementById('tip');
  document.querySelectorAll('svg circle[data-row]').forEach(function(c){
    var row=document.getElementById(c.getAttribute('data-row'));
    c.addEventListener('mouseenter',function(e){tip.textContent=c.getAttribute('data-tip');tip.style.display='block';
      if(row)row.classList.add('hl');c.classList.add('hl');});
    c.addEventListener('mousemove',function(e){tip.style.left=(e.clientX+12)+'px';tip.style.top=(e.clientY+12)+'px';});
    c.addEventListener('mouseleave',function(){tip.style.display='none';if(row)row.classList.remove('hl');c.classList.remove('hl');});
  });
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _plain(markdown: str) -> str:
    """A markdown cell as text: the report's cells use only ``**bold**`` and backticks."""
    return markdown.replace("**", "").replace("`", "")


def _sort_value(s: Summary | None) -> str:
    return "" if s is None or s.n == 0 or math.isnan(s.mean) else repr(s.mean)


def _marks_html(r: Row) -> str:
    """Each mark as a span whose title spells it out for this row (the markdown report's note)."""
    spelled = [n for n in notes(r).split("; ") if n]
    out = []
    for m in marks(r):
        detail = next((n for n in spelled if n.startswith(m)), "")
        out.append(f'<span class="mark" title="{_e(detail or MARK_MEANING.get(m, ""))}">{_e(m)}</span>')
    if r.n_failed:
        out.append(f'<span class="mark" title="{r.n_failed} failed seed(s): {_e("; ".join(r.failures))}">⚠</span>')
    return "".join(out)


def _td(text: str, sort: str | None = None, title: str | None = None) -> str:
    attrs = "" if sort is None else f' data-sort="{_e(sort)}"'
    attrs += "" if not title else f' title="{_e(title)}"'
    return f"<td{attrs}>{text}</td>"


def _table(table_id: str, rows: list[Row]) -> list[str]:
    metrics = metric_order(rows)
    primary = metrics[0] if metrics else None
    baselines = [b for b in GAIN_BASELINES if any(b in r.gains for r in rows)]
    head = ["rank", "strategy"]
    if primary:
        head += [f"{primary} (± std)", "95% CI"]
    head += [f"{m} (± std)" for m in metrics[1:]]
    head += ["seeds ok", *[f"gain vs {b}" for b in baselines], f"{PARETO_COST} (s)", "trainable params", "Pareto"]
    out = [f'<input class="filter" type="search" placeholder="filter rows…" data-table="{table_id}" '
           f'aria-label="filter the rows of this table">',
           f'<table class="board" id="{table_id}"><thead><tr>'
           + "".join(f'<th title="click to sort">{_e(h)}</th>' for h in head) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        name = r.label if r.label == r.strategy else f"{r.label} ({r.strategy})"
        cells = [_td(str(r.rank) if r.rank else DASH, str(r.rank or "")), _td(_e(name))]
        if primary:
            s = r.metrics.get(primary)
            cells += [_td(_e(pct(s)) + _marks_html(r), _sort_value(s)),
                      _td(_e(ci(s)), "" if s is None or s.n < 2 else repr(s.low))]
        cells += [_td(_e(pct(r.metrics.get(m))), _sort_value(r.metrics.get(m))) for m in metrics[1:]]
        cells.append(_td(_e(seeds(r)), str(r.n_ok)))
        cells += [_td(_e(gain(r.gains.get(b))), _sort_value(r.gains.get(b))) for b in baselines]
        wall = r.cost.get(PARETO_COST)
        cells += [_td(_e(num(wall)), _sort_value(wall)),
                  _td(_e(f"{r.params[0]:,}" if r.params[0] is not None else DASH), str(r.params[0] or "")),
                  _td("◆" if r.pareto else "", "1" if r.pareto else "0",
                      "Pareto-optimal: no other strategy is both better and cheaper" if r.pareto else None)]
        cls = ' class="tied"' if r.tied else ""
        out.append(f'<tr id="{table_id}-r{i}"{cls}>' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return out


def _pareto_svg(table_id: str, rows: list[Row], width: int = 520, height: int = 320) -> str:
    """(cost, primary metric) per row, the Pareto front joined; cost on a log axis when it spans a decade."""
    pts = [(i, r, r.cost[PARETO_COST].mean, r.score.mean) for i, r in enumerate(rows)
           if PARETO_COST in r.cost and r.score.n and not math.isnan(r.score.mean) and r.cost[PARETO_COST].mean > 0]
    if not pts:
        return '<p class="legend">No Pareto plot: no row has both a score and a measured cost.</p>'
    xs, ys = [p[2] for p in pts], [p[3] for p in pts]
    log = max(xs) / min(xs) > 10
    fx = (lambda v: math.log10(v)) if log else (lambda v: v)
    x0, x1 = fx(min(xs)), fx(max(xs))
    y0, y1 = min(ys), max(ys)
    pad_x, pad_y = (x1 - x0) * 0.08 or 1.0, (y1 - y0) * 0.1 or 0.01
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y
    left, bottom, right, top = 60, 40, 15, 15

    def sx(v: float) -> float:
        return left + (fx(v) - x0) / (x1 - x0) * (width - left - right)

    def sy(v: float) -> float:
        return height - bottom - (v - y0) / (y1 - y0) * (height - top - bottom)

    primary = rows[0].primary or "score"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="Pareto plot: {_e(primary)} against {PARETO_COST}">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#57606a"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#57606a"/>',
             f'<text x="{(width + left) / 2}" y="{height - 8}" text-anchor="middle" font-size="12">'
             f'{PARETO_COST} per run (s{", log scale" if log else ""})</text>',
             f'<text x="14" y="{(height - bottom) / 2}" text-anchor="middle" font-size="12" '
             f'transform="rotate(-90 14 {(height - bottom) / 2})">{_e(primary)} (%)</text>']
    for frac in (0.0, 0.5, 1.0):
        yv = y0 + pad_y + frac * (y1 - y0 - 2 * pad_y)
        xv = 10 ** (x0 + pad_x + frac * (x1 - x0 - 2 * pad_x)) if log else x0 + pad_x + frac * (x1 - x0 - 2 * pad_x)
        parts.append(f'<text x="{left - 6}" y="{sy(yv) + 4:.1f}" text-anchor="end" font-size="11">{100 * yv:.1f}</text>')
        parts.append(f'<text x="{sx(xv):.1f}" y="{height - bottom + 14}" text-anchor="middle" font-size="11">'
                     f'{xv:.3g}</text>')
    front = sorted((p for p in pts if p[1].pareto), key=lambda p: p[2])
    if len(front) > 1:
        parts.append('<polyline fill="none" stroke="#0969da" stroke-dasharray="4 3" points="'
                     + " ".join(f"{sx(p[2]):.1f},{sy(p[3]):.1f}" for p in front) + '"/>')
    for i, r, x, y in pts:
        tip = f"{r.label}: {100 * y:.2f} {primary}, {x:.1f} s per run" + (" (Pareto-optimal)" if r.pareto else "")
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="6" class="{"front" if r.pareto else "other"}" '
                     f'data-row="{table_id}-r{i}" data-tip="{_e(tip)}"><title>{_e(tip)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(rows: list[Row], title: str | None = None) -> str:
    """The page for one suite's rows."""
    if not rows:
        raise ValueError("no rows to render")
    first = rows[0]
    name = title or f"{first.suite}{' (smoke run)' if first.smoke else ''}"
    by_group: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_group[r.group].append(r)
    body = [f"<h1>{_e(name)}</h1>"]
    if first.smoke:
        body.append("<p><strong>Smoke run: a few steps per cell; these figures are not results.</strong></p>")
    body.append(f'<p class="legend">{_e(_plain(legend(rows)))}</p>')
    for n, (group, group_rows) in enumerate(sorted(by_group.items())):
        group_rows = sorted(group_rows, key=lambda r: (r.rank is None, r.rank or 0, r.label))
        table_id = f"pair{n}"
        metrics = metric_order(group_rows)
        body.append(f'<h2 id="{table_id}-title">{_e(group)}</h2>')
        body.append(f'<p class="legend">task: {_e(group_rows[0].task)} · primary metric: '
                    f'{_e(metrics[0] if metrics else DASH)} · ranked by its mean; bold: tied with the best</p>')
        body += _table(table_id, group_rows)
        body.append(f'<div class="plot">{_pareto_svg(table_id, group_rows)}'
                    '<p class="legend">Pareto plot: hover a point for its strategy; blue points and the dashed line '
                    'are the Pareto front (no other strategy is both better and cheaper).</p></div>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(name)} — harness</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body)
            + f'\n<div id="tip" role="tooltip"></div><script>{JS}</script></body></html>\n')


def write_html(rows: list[Row], out: str | Path, title: str | None = None) -> Path:
    """Write the page; return its path."""
    from harness.records import atomic_write_bytes

    out = Path(out)
    atomic_write_bytes(out, render_html(rows, title).encode("utf-8"))
    return out
