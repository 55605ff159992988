"""The drift report a person reads: a headline in words, each moved feature's two distributions, the other sections.

One self-contained HTML page (inline SVG, no script): the KFP HTML artifact of the drift step and
the CLI's ``report.html`` are this page.
"""

import html
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.drift.core import DriftReport, FeatureDrift

__all__ = ["render_report_html"]

_PICTURED_WHEN_NONE_DRIFTED = 3
_WIDTH, _HEIGHT, _AXIS, _LEFT = 560, 150, 34, 32
_REFERENCE_COLOUR, _CURRENT_COLOUR, _DRIFTED_COLOUR = "#9aa5b1", "#3b7dd8", "#d64545"
_STYLE = (
    "body{font:14px/1.45 system-ui,sans-serif;max-width:980px;margin:24px auto;padding:0 16px;color:#1f2933}"
    "h1{font-size:20px}h2{font-size:16px;margin-top:28px}figure{margin:16px 0;padding:8px 12px;"
    "border:1px solid #e4e7eb;border-radius:6px}figcaption{margin-bottom:6px}.numbers{color:#52606d;font-size:12px}"
    "table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}tr.d{background:#fde8e8}"
    ".key span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}"
)


def _escape(value: object) -> str:
    return html.escape(str(value))


def _bars(histogram: dict[str, list[Any]], drifted: bool) -> str:
    """An SVG bar chart: the reference's and the current share of each bin side by side."""
    bins, reference, current = histogram.get("bins", []), histogram.get("reference", []), histogram.get("current", [])
    if not bins:
        return "<p class=numbers>(no distribution to show: one side has no values)</p>"
    top = max([*reference, *current, 1e-9])
    slot = (_WIDTH - _LEFT) / len(bins)
    bar = max(1.0, slot * 0.38)
    colour = _DRIFTED_COLOUR if drifted else _CURRENT_COLOUR
    parts = [
        f'<svg role="img" width="{_WIDTH}" height="{_HEIGHT + _AXIS}" viewBox="0 0 {_WIDTH} {_HEIGHT + _AXIS}" '
        'xmlns="http://www.w3.org/2000/svg" font-size="10" font-family="sans-serif">',
        f'<line x1="{_LEFT}" y1="{_HEIGHT}" x2="{_WIDTH}" y2="{_HEIGHT}" stroke="#cbd2d9"/>',
        f'<line x1="{_LEFT}" y1="0" x2="{_LEFT}" y2="{_HEIGHT}" stroke="#cbd2d9"/>',
        f'<text x="{_LEFT - 3}" y="10" text-anchor="end" fill="#52606d">{top:.0%}</text>',
        f'<text x="{_LEFT - 3}" y="{_HEIGHT}" text-anchor="end" fill="#52606d">0</text>',
    ]
    for i, (label, ref, cur) in enumerate(zip(bins, reference, current, strict=True)):
        x = _LEFT + i * slot + slot * 0.1
        for offset, share, fill, side in ((0.0, ref, _REFERENCE_COLOUR, "reference"), (bar, cur, colour, "current")):
            height = _HEIGHT * share / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{_HEIGHT - height:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{fill}"><title>{_escape(label)}: {side} {share:.1%}</title></rect>'
            )
        text = label if len(label) <= max(4, int(slot / 6)) else label[: max(3, int(slot / 6) - 1)] + "…"
        parts.append(
            f'<text x="{_LEFT + i * slot + slot / 2:.1f}" y="{_HEIGHT + 14}" text-anchor="middle" fill="#3e4c59">'
            f"<title>{_escape(label)}</title>{_escape(text)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _numbers(feature: "FeatureDrift") -> str:
    detail = feature.detail
    numbers = [
        f"{feature.test.upper()} statistic {feature.statistic:.3g}",
        f"adjusted p {feature.p_adjusted:.2g}",
        f"effect {feature.effect:.3g} ({feature.effect_name.replace('_', ' ')}, above sampling noise)",
    ]
    if feature.kind == "numeric":
        if not math.isnan(feature.psi):
            numbers.append(f"PSI {feature.psi:.3g}")
        if "reference_median" in detail:
            numbers.append(f"median {detail['reference_median']:.4g} → {detail['current_median']:.4g}")
        if detail.get("current_outside_reference_range", 0) > 0:
            numbers.append(
                f"{detail['current_outside_reference_range']:.1%} of the batch outside the reference's range"
            )
    else:
        unseen = list(feature.detail_by("unseen"))
        if unseen:
            numbers.append("new categories: " + ", ".join(unseen[:5]))
        if detail.get("vanished_categories"):
            numbers.append(f"{detail['vanished_categories']:.0f} reference categories absent from the batch")
    return "; ".join(numbers)


def _figure(feature: "FeatureDrift") -> str:
    verdict = "drifted" if feature.drifted else "did not drift"
    return (
        f"<figure><figcaption><strong>{_escape(feature.words())}</strong> — {verdict}"
        f"<div class=numbers>{_escape(_numbers(feature))}</div></figcaption>"
        f"{_bars(feature.histogram, feature.drifted)}</figure>"
    )


def _label_section(report: "DriftReport") -> str:
    if math.isnan(report.label_reference_rate):
        return ""
    moved = not math.isnan(report.label_p_value) and report.label_p_value < report.config.fdr_q
    p_value = "untestable" if math.isnan(report.label_p_value) else f"p = {report.label_p_value:.2g}"
    return (
        "<h2>The label</h2>"
        f"<p>Positive rate {report.label_reference_rate:.1%} in the reference, {report.label_current_rate:.1%} in "
        f"the batch ({p_value}): {'the prior moved' if moved else 'no shift of the prior beyond chance'}. The "
        "label is not a model input; it is tested apart from the features.</p>"
    )


def _model_section(report: "DriftReport") -> str:
    model = report.sections.get("model")
    if not model:
        return ""
    if "skipped" in model:
        return f"<h2>The model</h2><p>Not measured: {_escape(model['skipped'])}.</p>"
    sentences = []
    for view, how in (
        ("realised", "on the batch's labels"),
        ("estimated", "from its calibrated confidence, no labels"),
    ):
        auc = model.get(view)
        if isinstance(auc, dict):
            sentences.append(
                f"AUC {how}: {auc['reference']:.3f} on its reference, {auc['current']:.3f} on the batch (drop "
                f"{auc['drop']:+.3f}, interval {auc['low']:+.3f} to {auc['high']:+.3f})."
            )
    shift = model.get("prediction_shift", {})
    if shift:
        sentences.append(
            f"Its scores {'shifted' if shift.get('drifted') else 'did not shift beyond noise'} (effect "
            f"{shift.get('effect', math.nan):.3g} IQR, PSI {shift.get('psi', math.nan):.3g})."
        )
    verdict = "a performance drop to act on" if model.get("predicted_drop") else "no performance drop to act on"
    sentences.append(f"Verdict: {verdict}.")
    return "<h2>The model</h2><p>" + " ".join(_escape(s) for s in sentences) + "</p>"


def _multivariate_section(report: "DriftReport") -> str:
    multivariate = report.sections.get("multivariate")
    if not multivariate or "auc" not in multivariate:
        return ""
    leaning = ", ".join(
        f"{name} ({share:.0%})" for name, share in list(multivariate.get("top_features", {}).items())[:3]
    )
    told = (
        "a classifier tells the batch's rows from the reference's: the features moved together, even where no "
        "single one drifted on its own"
        if multivariate["drifted"]
        else "a classifier cannot tell the batch's rows from the reference's beyond chance"
    )
    return (
        "<h2>All features together</h2>"
        f"<p>Domain classifier AUC {multivariate['auc']:.3f} (interval {multivariate['low']:.3f}–"
        f"{multivariate['high']:.3f}, p = {multivariate['p_value']:.2g}, {multivariate['rows']:,} rows a side): "
        f"{told}.{' It leaned most on ' + _escape(leaning) + '.' if leaning else ''}</p>"
    )


def _table(report: "DriftReport") -> str:
    rows = "".join(
        f"<tr{' class=d' if f.drifted else ''}><td>{_escape(f.feature)}</td><td>{f.kind}</td><td>{f.test}</td>"
        f"<td>{f.p_adjusted:.2g}</td><td>{f.effect:.3f}</td><td>{'yes' if f.drifted else 'no'}</td></tr>"
        for f in sorted(report.features, key=lambda f: (not f.drifted, -f.effect))
    )
    return (
        "<h2>Every feature's test</h2><table><tr><th>feature</th><th>kind</th><th>test</th><th>adjusted p</th>"
        f"<th>effect</th><th>drifted</th></tr>{rows}</table>"
    )


def render_report_html(report: "DriftReport", *, extra: str = "") -> str:
    """The whole page of a drift report.

    Args:
        report: The report.
        extra: HTML appended at the end (e.g. a link to Evidently's report).

    Returns:
        A self-contained HTML document.
    """
    drifted = sorted((f for f in report.features if f.drifted), key=lambda f: -f.effect)
    if drifted:
        moved = "<h2>What moved</h2>" + "".join(_figure(f) for f in drifted)
    else:
        largest = sorted(report.features, key=lambda f: -f.effect)[:_PICTURED_WHEN_NONE_DRIFTED]
        moved = "<h2>No feature drifted; the largest effects</h2>" + "".join(_figure(f) for f in largest)
    config = report.config
    rule = (
        f"{report.current_rows:,} rows of the batch against {report.reference_rows:,} reference rows. A feature drifts "
        f"when its Benjamini–Hochberg-adjusted p-value is below {config.fdr_q} and its effect reaches "
        f"{config.numeric_effect_floor} IQR (numbers, Wasserstein) or {config.categorical_effect_floor} "
        f"(categories, Jensen–Shannon); the dataset drifts when at least {config.drift_share:.0%} of the features do."
    )
    key = (
        f'<p class=key>Bars:<span style="background:{_REFERENCE_COLOUR}"></span>reference'
        f'<span style="background:{_CURRENT_COLOUR}"></span>batch'
        f'<span style="background:{_DRIFTED_COLOUR}"></span>batch, drifted feature</p>'
    )
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>driftpilot drift report</title>"
        f"<style>{_STYLE}</style><h1>{_escape(report.headline())}</h1><p>{_escape(rule)}</p>{key}{moved}"
        f"{_label_section(report)}{_model_section(report)}{_multivariate_section(report)}{_table(report)}{extra}"
        "</html>"
    )
