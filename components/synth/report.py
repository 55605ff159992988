"""The robustness report: every scenario's ground truth beside what driftpilot detected and did.

``write_report`` writes ``scenarios.json`` (every number) and ``report.html``: per dataset the
synthetic data's quality (per-column distances, association error, the real-vs-synthetic
classifier AUC), a table of the scenarios (change point, first alarm, detection delay, false
alarms, first action, whether it is one the scenario calls for) and, per scenario, a plot of
the model's quality over time (driftpilot and the static model) with the change point, the
batches the investigator flagged and the actions that ran.
"""

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.synth.scenarios import ScenarioResult, scenario_summary

__all__ = ["write_report"]

_KIND_COLOURS = {"covariate": "#1f77b4", "prior": "#9467bd", "concept": "#d62728", "data_quality": "#7f7f7f"}


def _plot(result: ScenarioResult) -> str:
    """A PNG of the scenario's batch metric over time, as a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 2.6))
    batches = range(1, len(result.metrics) + 1)
    axis.plot(batches, result.static, color="#999999", lw=1.2, label="static model")
    axis.plot(batches, result.metrics, color="#ff7f0e", lw=2, label="driftpilot")
    if result.scenario.change is not None:
        axis.axvline(result.scenario.change - 0.5, color="black", ls="--", lw=1, label="change (truth)")
    low = min(v for v in [*result.metrics, *result.static] if not math.isnan(v))
    for index, kind in enumerate(result.kinds, start=1):
        if kind in _KIND_COLOURS:
            axis.scatter([index], [low - 0.01], color=_KIND_COLOURS[kind], marker="|", s=120)
    for index, action in enumerate(result.actions, start=1):
        if action != "none":
            axis.annotate(action, (index + 0.5, result.metrics[index] if index < len(result.metrics) else low),
                          fontsize=7, rotation=60, color="#333333")  # fmt: skip
    axis.set_xlabel("batch (15 minutes each; ticks below: the investigator's kind)")
    axis.set_ylabel("AUC")
    axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _quality_table(quality: Mapping[str, Any]) -> str:
    rows = []
    for generator, found in quality.items():
        if "error" in found:
            rows.append(f"<tr><td>{html.escape(generator)}</td><td colspan=7>{html.escape(found['error'])}</td></tr>")
            continue
        rows.append(
            f"<tr><td>{html.escape(generator)}</td><td>{found['detection_auc']:.3f}</td>"
            f"<td>{found['association_error']:.3f}</td><td>{found['mean_ks']:.3f}</td>"
            f"<td>{found['mean_wasserstein_iqr']:.3f}</td><td>{found['mean_tvd']:.3f}</td>"
            f"<td>{found['fit_seconds']:.1f}</td><td>{found['sample_seconds']:.1f}</td></tr>"
        )
    head = ("<tr><th>generator</th><th>real-vs-synthetic AUC</th><th>association error</th><th>mean KS</th>"
            "<th>mean Wasserstein/IQR</th><th>mean TVD</th><th>fit s</th><th>sample s</th></tr>")  # fmt: skip
    return f"<table>{head}{''.join(rows)}</table>"


def _scenario_table(results: Sequence[ScenarioResult]) -> str:
    heads = ("scenario", "truth", "change", "first alarm", "delay (batches)", "false alarms", "first action",
             "calls for", "right", "retrains")  # fmt: skip
    rows = []
    for r in results:
        s = r.scenario
        missed = "—" if s.change is None else "missed"
        cells = (
            s.name,
            s.kind,
            "—" if s.change is None else s.change,
            "—" if r.first_alarm is None else r.first_alarm,
            missed if r.delay is None else r.delay,
            r.false_alarms,
            r.first_action,
            "/".join(s.expected) or "none",
            "yes" if r.correct else "NO",
            r.retrains,
        )
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in heads)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def write_report(runs: Mapping[str, tuple[Sequence[ScenarioResult], Mapping[str, Any]]], out: Path) -> dict[str, Any]:
    """Write ``scenarios.json`` and ``report.html``.

    Args:
        runs: Per dataset: its scenario results and its synthetic data's quality per generator.
        out: The folder.

    Returns:
        The JSON document.
    """
    out.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {}
    sections = []
    for dataset, (results, quality) in runs.items():
        summary = scenario_summary(results)
        document[dataset] = {
            "summary": summary,
            "synthetic_quality": quality,
            "scenarios": [r.to_dict() for r in results],
        }
        plots = "".join(
            f"<h3>{html.escape(r.scenario.name)}</h3><p>{html.escape(r.scenario.description)} "
            f"(injected: {html.escape(r.scenario.drift.name if r.scenario.drift else r.scenario.fault or 'nothing')})"
            f"</p><img src='{_plot(r)}' alt='{html.escape(r.scenario.name)}'>"
            for r in results
        )
        sections.append(
            f"<h2>{html.escape(dataset)}</h2><p>{html.escape(json.dumps(summary))}</p>"
            f"<h3>Synthetic data (fitted to the real rows)</h3>{_quality_table(quality)}"
            f"<h3>Scenarios</h3>{_scenario_table(results)}{plots}"
        )
    style = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f3f3f3}")  # fmt: skip
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>driftpilot robustness report</title>"
        f"<style>{style}</style></head><body><h1>driftpilot robustness report</h1>"
        "<p>Each scenario replays batches of synthetic rows (a Gaussian copula fitted to the real data) through "
        "the loop: the quality agent, the drift tests, the investigator, the strategist, the safety policy and "
        "the response. A batch is an alarm when the investigator calls it anything but <i>none</i>.</p>"
        f"{''.join(sections)}</body></html>"
    )
    (out / "report.html").write_text(page, encoding="utf-8")
    (out / "scenarios.json").write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return document
