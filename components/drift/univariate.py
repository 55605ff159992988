"""Per-column drift tests computed from a reference profile and a window summary.

Numeric columns: the two-sample Kolmogorov–Smirnov statistic over the reference's quantile edges
(its p-value from scipy's ``kstwo``, as ``ks_2samp`` computes it asymptotically), the
Wasserstein-1 distance in reference interquartile ranges, and the population stability index on
the reference's deciles. Evaluating the empirical CDFs at the reference quantiles can only lower
the KS statistic, so the test stays conservative. The Wasserstein integral is exact per bin
(from the lower partial means both sides keep), so only CDFs crossing inside one bin are
approximated, and the mass outside the reference's range is exact.

Categorical columns: Pearson's χ² over the reference's frequent categories (rare and unseen ones
pooled, missing values as a category of their own) and the Jensen–Shannon distance (base 2).

Rows may come in groups that are alike (GDELT codes several events from one article: same tone,
often the same actors and place). Such rows are not independent draws, and tests that count
them as such flag the window's own clustering as drift. Each side then counts as
``rows / design_effect`` effective rows, the design effect being ``1 + (m_w - 1) * rho`` for the
side's size-weighted mean group size ``m_w`` and the column's intraclass correlation ``rho``
(estimated on the reference, see ``components.drift.profile``).

An effect is the observed distance less the distance two samples of the reference's and the
window's (effective) sizes reach by chance (numeric: its expectation under the normal approximation;
categorical: the median over a few multinomial draws from the profile), never below 0: small
windows over long-tailed columns do not flag their own sparsity, and a floor on the effect keeps
huge windows from flagging negligible shifts.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from components.drift.profile import (
    MISSING,
    OTHER,
    CategoricalCounts,
    CategoricalProfile,
    NumericCounts,
    NumericProfile,
)

__all__ = ["ColumnTest", "categorical_histogram", "compare_categorical", "compare_numeric", "numeric_histogram"]

_NOISE_DRAWS = 7
_PSI_EPSILON = 1e-4
_PICTURED_CATEGORIES = 10


def _number(value: float) -> str:
    return f"{value:.3g}"


def numeric_histogram(profile: NumericProfile, counts: NumericCounts) -> dict[str, list[Any]]:
    """Both sides' shares in the reference's decile bins, the window's values outside its range, and missing.

    The bins are the PSI's (about a tenth of the reference each), so a flat reference and a
    lopsided window is what a shift looks like; values below or above every reference value get a
    bin of their own (the reference has none there).
    """
    cuts = sorted({*(int(i) for i in profile.psi_edges), len(profile.edges) - 1})
    edges = profile.edges
    rows = max(counts.rows, 1)
    window_cdf = counts.at_or_below / rows
    reference_cdf = profile.cdf
    labels, reference, current = [f"< {_number(edges[0])}"], [0.0], [counts.below_rows / rows]
    previous = None
    for cut in cuts:
        if previous is None:
            labels.append(f"≤ {_number(edges[cut])}")
            reference.append(float(reference_cdf[cut]))
            current.append(float(window_cdf[cut]) - counts.below_rows / rows)
        else:
            labels.append(f"{_number(edges[previous])} – {_number(edges[cut])}")
            reference.append(float(reference_cdf[cut] - reference_cdf[previous]))
            current.append(float(window_cdf[cut] - window_cdf[previous]))
        previous = cut
    labels.append(f"> {_number(edges[-1])}")
    reference.append(0.0)
    current.append(float(1.0 - window_cdf[-1]) if counts.rows else 0.0)
    present = (profile.rows + profile.missing, counts.rows + counts.missing)
    reference = [share * profile.rows / max(present[0], 1) for share in reference]
    current = [share * counts.rows / max(present[1], 1) for share in current]
    labels.append("missing")
    reference.append(profile.missing / max(present[0], 1))
    current.append(counts.missing / max(present[1], 1))
    keep = [i for i, (r, c) in enumerate(zip(reference, current, strict=True)) if r > 0 or c > 0]
    return {
        "bins": [labels[i] for i in keep],
        "reference": [round(reference[i], 5) for i in keep],
        "current": [round(current[i], 5) for i in keep],
    }


def categorical_histogram(profile: CategoricalProfile, counts: CategoricalCounts) -> dict[str, list[Any]]:
    """Both sides' shares of the categories that weigh most on either side, the rest pooled."""
    reference = profile.counts / max(profile.counts.sum(), 1)
    current = counts.counts / max(counts.counts.sum(), 1)
    names = {OTHER: "rare or new", MISSING: "missing"}
    order = [int(i) for i in np.argsort(-np.maximum(reference, current), kind="stable")]
    shown = [i for i in order if profile.categories[i] not in names][:_PICTURED_CATEGORIES]
    rest = [i for i in range(len(profile.categories)) if i not in shown]
    bins = [profile.categories[i] for i in shown]
    shares = [(float(reference[i]), float(current[i])) for i in shown]
    pooled = [i for i in rest if profile.categories[i] not in names]
    if pooled:
        bins.append(f"{len(pooled)} other categories")
        shares.append((float(reference[pooled].sum()), float(current[pooled].sum())))
    for i in rest:
        if profile.categories[i] in names and (reference[i] > 0 or current[i] > 0):
            bins.append(names[profile.categories[i]])
            shares.append((float(reference[i]), float(current[i])))
    return {
        "bins": bins,
        "reference": [round(r, 5) for r, _ in shares],
        "current": [round(c, 5) for _, c in shares],
    }


@dataclass(frozen=True)
class ColumnTest:
    """The drift test of one column, before multiple-testing control.

    Attributes:
        kind: ``numeric`` or ``categorical``.
        test: ``ks`` or ``chi2``.
        statistic: The test statistic.
        p_value: Raw p-value.
        effect: Wasserstein/IQR or Jensen–Shannon distance above sampling noise (never below 0).
        effect_name: ``wasserstein_iqr`` or ``jensen_shannon``.
        psi: Population stability index on reference deciles (numeric; NaN for categorical).
        detail: Distances, noise, medians and largest movers, for people.
        histogram: The two distributions side by side, for a picture: ``bins`` (labels),
            ``reference`` and ``current`` (shares of each side's rows, missing included).
    """

    kind: str
    test: str
    statistic: float
    p_value: float
    effect: float
    effect_name: str
    psi: float
    detail: dict[str, float] = field(default_factory=dict)
    histogram: dict[str, list[Any]] = field(default_factory=dict)


def _no_test(kind: str) -> ColumnTest:
    if kind == "numeric":
        return ColumnTest("numeric", "ks", 0.0, 1.0, 0.0, "wasserstein_iqr", float("nan"))
    return ColumnTest("categorical", "chi2", 0.0, 1.0, 0.0, "jensen_shannon", float("nan"))


def _wasserstein(profile: NumericProfile, counts: NumericCounts) -> float:
    """Wasserstein-1 distance, in reference IQRs, between the reference and a window.

    Per bin the integral of each CDF is exact (from the lower partial means); the distance sums
    the bins' absolute differences, which is exact unless the CDFs cross inside a bin. Outside
    the reference's range its CDF is 0 or 1 and the window's mass there is exact.
    """
    window = counts.lower_partial_mean(profile.edges)
    inside = float(np.abs(np.diff(profile.lower_partial_mean - window)).sum())
    return (window[0] + inside + counts.above_mass / counts.rows) / profile.scale


def _wasserstein_noise(profile: NumericProfile, reference_rows: float, rows: float) -> float:
    """Expected Wasserstein-1 distance (in IQRs) between samples of the reference's and a window's sizes.

    At each point the difference of two empirical CDFs of one distribution is close to normal
    with variance ``F(1-F)(1/n + 1/m)``, whose absolute value has mean ``sqrt(2/pi)`` times its
    standard deviation; the expectation of the integral is the integral of those means.
    """
    spread = np.sqrt(profile.cdf[:-1] * (1.0 - profile.cdf[:-1])) @ np.diff(profile.edges)
    return float(math.sqrt(2.0 / math.pi * (1.0 / rows + 1.0 / reference_rows)) * spread / profile.scale)


def _draws(masses: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Shares of ``_NOISE_DRAWS`` multinomial samples of ``rows`` rows, shape (draws, bins)."""
    masses = np.clip(masses, 0.0, None)
    return rng.multinomial(max(rows, 1), masses / masses.sum(), size=_NOISE_DRAWS) / max(rows, 1)


def compare_numeric(
    profile: NumericProfile, counts: NumericCounts, *, design_effects: tuple[float, float] = (1.0, 1.0)
) -> ColumnTest:
    """Test one numeric column of a window against its reference profile.

    Args:
        profile: The column's reference profile.
        counts: The column's window counts.
        design_effects: How many times grouped rows inflate the reference's and the window's
            share variances; the test and the noise use the effective sizes
            ``rows / design_effect``.

    Returns:
        The column's test.
    """
    n, m = counts.rows, profile.rows
    if n == 0 or m == 0:
        return _no_test("numeric")
    cdf = counts.at_or_below / n
    below, above = counts.below_rows / n, 1.0 - cdf[-1]
    statistic = max(float(np.max(np.abs(profile.cdf - cdf))), below)
    m_eff, n_eff = m / design_effects[0], n / design_effects[1]
    p_value = float(stats.kstwo.sf(statistic, max(1, round(n_eff * m_eff / (n_eff + m_eff)))))
    observed = _wasserstein(profile, counts)
    noise = _wasserstein_noise(profile, m_eff, n_eff)

    bounds = np.concatenate([[0.0], profile.cdf[profile.psi_edges], [1.0]])
    window_bounds = np.concatenate([[0.0], cdf[profile.psi_edges], [1.0]])
    expected = np.clip(np.diff(bounds), _PSI_EPSILON, None)
    actual = np.clip(np.diff(window_bounds), _PSI_EPSILON, None)
    psi = float(np.sum((actual - expected) * np.log(actual / expected)))

    middle = int(np.searchsorted(profile.cdf, 0.5))
    detail = {
        "distance": observed,
        "noise": noise,
        "reference_median": float(profile.edges[min(middle, len(profile.edges) - 1)]),
        "current_median": float(profile.edges[min(int(np.searchsorted(cdf, 0.5)), len(profile.edges) - 1)]),
        "current_outside_reference_range": below + above,
        "current_missing": counts.missing / max(counts.rows + counts.missing, 1),
        "reference_missing": profile.missing / max(profile.rows + profile.missing, 1),
        "mean_shift_iqr": _mean_shift(profile, counts),
    }
    effect = max(0.0, observed - noise)
    histogram = numeric_histogram(profile, counts)
    return ColumnTest("numeric", "ks", statistic, p_value, effect, "wasserstein_iqr", psi, detail, histogram)


def _mean_shift(profile: NumericProfile, counts: NumericCounts) -> float:
    """The window's mean less the reference's, in reference IQRs (the direction of a shift)."""
    edges = profile.edges
    reference_mean = edges[-1] - profile.lower_partial_mean[-1]  # every reference value is at most edges[-1]
    above = counts.rows - counts.at_or_below[-1]
    offsets = counts.sum_at_or_below[-1] + counts.above_mass + above * (edges[-1] - edges[0])
    window_mean = edges[0] + offsets / counts.rows
    return float((window_mean - reference_mean) / profile.scale)


def compare_categorical(
    profile: CategoricalProfile,
    counts: CategoricalCounts,
    *,
    design_effects: tuple[float, float] = (1.0, 1.0),
    seed: int = 0,
) -> ColumnTest:
    """Test one categorical column of a window against its reference profile.

    Args:
        profile: The column's reference profile.
        counts: The column's window counts.
        design_effects: How many times grouped rows inflate the reference's and the window's
            share variances; the test and the noise use the effective sizes
            ``rows / design_effect``.
        seed: Seed of the sampling-noise draws.

    Returns:
        The column's test.
    """
    reference, window = profile.counts.astype("float64"), counts.counts.astype("float64")
    n, m = int(window.sum()), int(reference.sum())
    present = (reference + window) > 0
    if n == 0 or m == 0 or present.sum() < 2:
        return _no_test("categorical")
    chi2 = stats.chi2_contingency(np.vstack([reference[present], window[present]]), correction=False)
    m_eff, n_eff = m / design_effects[0], n / design_effects[1]
    # χ² grows with the sizes as 1 / (1/m + 1/n): at the effective sizes it shrinks by this much.
    statistic = float(chi2.statistic) * (1 / m + 1 / n) / (1 / m_eff + 1 / n_eff)
    p_value = float(stats.chi2.sf(statistic, chi2.dof))
    p_reference, p_window = reference / m, window / n
    observed = float(jensenshannon(p_reference, p_window, base=2))

    rng = np.random.default_rng(seed)
    pairs = zip(_draws(p_reference, round(m_eff), rng), _draws(p_reference, round(n_eff), rng), strict=True)
    noise = float(np.median([jensenshannon(a, b, base=2) for a, b in pairs]))

    change = p_window - p_reference
    movers = np.argsort(-np.abs(change), kind="stable")[:5]
    detail: dict[str, float] = {"distance": observed, "noise": noise}
    detail |= {f"share_change[{profile.categories[i]}]": round(float(change[i]), 4) for i in movers}
    vanished = [c for c, r, w in zip(profile.categories, reference, window, strict=True) if r > 0 and w == 0]
    detail["vanished_categories"] = float(len([c for c in vanished if c not in (OTHER, MISSING)]))
    detail |= {f"unseen[{name}]": float(count) for name, count in counts.unseen.items()}
    effect = max(0.0, observed - noise)
    histogram = categorical_histogram(profile, counts)
    return ColumnTest("categorical", "chi2", statistic, p_value, effect, "jensen_shannon", math.nan, detail, histogram)
