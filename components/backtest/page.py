"""The backtest's page: per stream, the cost–metric frontier and every policy's numbers, for people."""

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_backtest_html"]

_STYLE = (
    "body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#1f2933}"
    "h1{font-size:20px}h2{font-size:16px;margin-top:28px}table{border-collapse:collapse}"
    "td,th{padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
    "tr.ours{background:#e8f1fd;font-weight:600}img{max-width:100%;border:1px solid #e4e7eb}"
)


def _image(path: Path) -> str:
    if not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></p>'


def _share(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0%}"


def _stream(document: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr{' class=ours' if name == 'driftpilot' else ''}><td>{html.escape(name)}</td>"
        f"<td>{policy['mean_batch_metric']:.4f}</td><td>{policy['retrains']}</td>"
        f"<td>{policy['train_seconds']:.1f}</td></tr>"
        for name, policy in document["policies"].items()
    )
    beaten = ", ".join(document.get("driftpilot_beaten_by", [])) or "none"
    source, metric = html.escape(str(document["source"])), html.escape(str(document["metric"]))
    return (
        f"<h2>{source} ({document['batches']} batches, {metric})</h2>"
        f"<p>driftpilot: {_share(document['driftpilot_share_of_gain'])} of every_batch's gain over static with "
        f"{_share(document['driftpilot_share_of_retrains'])} of its retrains and "
        f"{_share(document['driftpilot_share_of_seconds'])} of its training seconds; schedules with as few retrains "
        f"and a higher mean: {html.escape(beaten)}; UPF area above every schedule: "
        f"{'yes' if document['upf_beats_every_periodic'] else 'no'}.</p>"
        "<table><tr><th>policy</th><th>mean metric</th><th>retrains</th><th>train CPU-s</th></tr>"
        f"{rows}</table>"
    )


def render_backtest_html(documents: Sequence[dict[str, Any]], out: Path) -> str:
    """The page of a backtest written to ``out``: its plots inline, then every stream's table.

    Args:
        documents: The streams' ``kpis`` documents.
        out: The folder holding ``frontier.png``, ``frontier-seconds.png`` and ``backtest.png``.
    """
    plots = "".join(_image(out / name) for name in ("frontier.png", "frontier-seconds.png", "backtest.png"))
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>driftpilot backtest</title>"
        f"<style>{_STYLE}</style><h1>Backtest: the cost–metric frontier of {len(documents)} stream(s)</h1>"
        "<p>Each policy replays the stream prequentially (a batch is scored before its labels are learnt). "
        "The frontier plots put every schedule (static, every batch, every k-th) and driftpilot at several "
        "cost ratios on mean metric against retrains and against training CPU-seconds.</p>"
        f"{plots}{''.join(_stream(d) for d in documents)}</html>"
    )
