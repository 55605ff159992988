"""Mergeable summaries of tables: a reference profile and the counts of a window against it.

The reference is profiled once (when its model is trained): per numeric column, its distinct
quantiles at ``bins`` levels become bin edges and its cumulative distribution is kept at those
edges; per categorical column, its frequent categories are kept with their counts. A window of
new rows is then summarised *against* that profile: per numeric column, the count of values at
or below every edge plus the mass outside the reference's range; per categorical column, the
count of every kept category, of the rest and of missing values.

A window summary is a sum of per-row contributions, so summaries of partitions merge by
addition (``WindowSummary.merge``): the same code runs on one pandas frame and on every
partition of a Dask frame, and a window of any length is checked in the memory of one partition.

Edges are reference values, not interpolated ones, so a discrete column (counts, codes, scores
on a fixed scale) keeps one edge per distinct value and its distribution is kept exactly.
"""

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.errors import ConfigError, DataValidationError

__all__ = [
    "MISSING",
    "OTHER",
    "PROFILE_FILE",
    "CategoricalCounts",
    "CategoricalProfile",
    "NumericCounts",
    "NumericProfile",
    "Profile",
    "WindowSummary",
    "group_size",
    "profile_frame",
    "summarize_frame",
    "summarize_partitions",
]

PROFILE_FILE = "profile.json"
"""A profile's file name: in a model's folder (profiled when it was trained) and a drift run's outputs."""
OTHER = "__other__"
MISSING = "__missing__"
_UNSEEN_KEPT = 10
_RARE_KEPT = 10_000


@dataclass(frozen=True)
class NumericProfile:
    """The reference distribution of one numeric column.

    Attributes:
        edges: Distinct reference quantiles, ascending, shape (k,).
        cdf: Share of reference values at or below each edge, shape (k,); the last is 1.
        lower_partial_mean: ``E[(edge - X)+]`` over the reference at each edge, shape (k,): the
            integral of the CDF up to the edge, from which Wasserstein distances are exact per bin.
        rows: Non-missing reference values.
        missing: Missing (or non-finite) reference values.
        scale: The reference's interquartile range (its standard deviation when that is 0, else 1):
            the unit of distances.
        psi_edges: Indices into ``edges`` of the reference deciles that bound the PSI bins.
    """

    edges: np.ndarray
    cdf: np.ndarray
    lower_partial_mean: np.ndarray
    rows: int
    missing: int
    scale: float
    psi_edges: np.ndarray


@dataclass(frozen=True)
class CategoricalProfile:
    """The reference distribution of one categorical column.

    Attributes:
        categories: Kept categories (as strings), in a fixed order; the last two are ``OTHER``
            (rare and unseen categories pooled) and ``MISSING``.
        counts: Reference count of each entry of ``categories``.
        rare: Reference categories pooled into ``OTHER`` (at most ``_RARE_KEPT`` of them), so that a
            window's pooled categories that are not here are known to be new.
    """

    categories: tuple[str, ...]
    counts: np.ndarray
    rare: frozenset[str] = frozenset()

    @property
    def rows(self) -> int:
        """Reference rows (missing included)."""
        return int(self.counts.sum())


@dataclass(frozen=True)
class NumericCounts:
    """A window's numeric column, counted against its reference edges.

    Attributes:
        at_or_below: Count of values at or below each reference edge, shape (k,).
        sum_at_or_below: Sum of ``x - edges[0]`` over the values at or below each edge, shape (k,).
        rows: Non-missing values.
        missing: Missing (or non-finite) values.
        below_rows: Values below the reference minimum.
        above_mass: Sum of ``x - edges[-1]`` over values above the reference maximum.
    """

    at_or_below: np.ndarray
    sum_at_or_below: np.ndarray
    rows: int
    missing: int
    below_rows: int
    above_mass: float

    def lower_partial_mean(self, edges: np.ndarray) -> np.ndarray:
        """``E[(edge - X)+]`` over the window at each reference edge (zeros for an empty window)."""
        if self.rows == 0:
            return np.zeros(len(edges))
        return ((edges - edges[0]) * self.at_or_below - self.sum_at_or_below) / self.rows

    def merge(self, other: "NumericCounts") -> "NumericCounts":
        """Return the counts of both windows together."""
        return NumericCounts(
            self.at_or_below + other.at_or_below,
            self.sum_at_or_below + other.sum_at_or_below,
            self.rows + other.rows,
            self.missing + other.missing,
            self.below_rows + other.below_rows,
            self.above_mass + other.above_mass,
        )


@dataclass(frozen=True)
class CategoricalCounts:
    """A window's categorical column, counted over its reference categories.

    Attributes:
        counts: Count per entry of the profile's ``categories``.
        unseen: The most frequent categories absent from the reference, with their counts
            (counted in ``OTHER``).
    """

    counts: np.ndarray
    unseen: dict[str, int] = field(default_factory=dict)

    def merge(self, other: "CategoricalCounts") -> "CategoricalCounts":
        """Return the counts of both windows together (``unseen`` keeps the largest entries)."""
        unseen = dict(self.unseen)
        for name, count in other.unseen.items():
            unseen[name] = unseen.get(name, 0) + count
        top = sorted(unseen.items(), key=lambda item: (-item[1], item[0]))[:_UNSEEN_KEPT]
        return CategoricalCounts(self.counts + other.counts, dict(top))


@dataclass(frozen=True)
class Profile:
    """The reference profile of a table: what a window is compared with.

    Attributes:
        numeric: Numeric columns by name.
        categorical: Categorical columns by name.
        rows: Reference rows.
        group_size: The size-weighted mean size of the groups rows come in (GDELT: the events
            coded from one article), ``sum(m^2) / sum(m)``; 1 for independent rows.
        intraclass: Per column, how alike the rows of one group are (0: as independent rows,
            1: identical), estimated on the reference; a column absent here counts as 1.
    """

    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    rows: int
    group_size: float = 1.0
    intraclass: dict[str, float] = field(default_factory=dict)

    def design_effect(self, column: str, group_size: float) -> float:
        """How many times rows in groups of ``group_size`` inflate a column's share variances."""
        return 1.0 + (group_size - 1.0) * self.intraclass.get(column, 1.0)

    @property
    def columns(self) -> list[str]:
        """Profiled columns, numeric first."""
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as JSON-ready data."""
        return {
            "rows": self.rows,
            "group_size": self.group_size,
            "intraclass": self.intraclass,
            "numeric": {
                name: {
                    "edges": p.edges.tolist(),
                    "cdf": p.cdf.tolist(),
                    "lower_partial_mean": p.lower_partial_mean.tolist(),
                    "rows": p.rows,
                    "missing": p.missing,
                    "scale": p.scale,
                    "psi_edges": p.psi_edges.tolist(),
                }
                for name, p in self.numeric.items()
            },
            "categorical": {
                name: {
                    "categories": list(p.categories),
                    "counts": p.counts.tolist(),
                    "rare": sorted(p.rare),
                }
                for name, p in self.categorical.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        """Rebuild a profile written by ``to_dict``."""
        numeric = {
            name: NumericProfile(
                edges=np.asarray(p["edges"], dtype="float64"),
                cdf=np.asarray(p["cdf"], dtype="float64"),
                lower_partial_mean=np.asarray(p["lower_partial_mean"], dtype="float64"),
                rows=int(p["rows"]),
                missing=int(p["missing"]),
                scale=float(p["scale"]),
                psi_edges=np.asarray(p["psi_edges"], dtype="int64"),
            )
            for name, p in data["numeric"].items()
        }
        categorical = {
            name: CategoricalProfile(
                tuple(p["categories"]),
                np.asarray(p["counts"], dtype="int64"),
                frozenset(p.get("rare", ())),
            )
            for name, p in data["categorical"].items()
        }
        return cls(
            numeric,
            categorical,
            int(data["rows"]),
            float(data.get("group_size", 1.0)),
            {name: float(rho) for name, rho in data.get("intraclass", {}).items()},
        )

    def save(self, path: Path) -> Path:
        """Write the profile as JSON and return the path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> "Profile":
        """Read a profile written by ``save``."""
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class WindowSummary:
    """A window of rows summarised against a profile; summaries of disjoint windows merge.

    Attributes:
        numeric: Counts per numeric column.
        categorical: Counts per categorical column.
        rows: Rows in the window.
        group_size: As ``Profile.group_size``, for the window's rows (1 when their groups are
            not known).
    """

    numeric: dict[str, NumericCounts]
    categorical: dict[str, CategoricalCounts]
    rows: int
    group_size: float = 1.0

    def merge(self, other: "WindowSummary") -> "WindowSummary":
        """Return the summary of both windows together (groups do not straddle windows)."""
        rows = self.rows + other.rows
        weighted = self.group_size * self.rows + other.group_size * other.rows
        return WindowSummary(
            {name: counts.merge(other.numeric[name]) for name, counts in self.numeric.items()},
            {name: counts.merge(other.categorical[name]) for name, counts in self.categorical.items()},
            rows,
            weighted / rows if rows else 1.0,
        )


def _finite_sorted(values: pd.Series) -> tuple[np.ndarray, int]:
    """Return the column's finite values sorted, and how many values were missing or infinite."""
    array = values.to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(array)
    ordered = np.sort(array if finite.all() else array[finite], kind="quicksort")
    return ordered, len(array) - len(ordered)


def _cumulative(ordered: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Count and sum of ``x - edges[0]`` over the sorted values at or below each edge."""
    at_or_below = np.searchsorted(ordered, edges, side="right").astype("int64")
    starts = np.concatenate([[0], at_or_below[:-1]])
    filled = at_or_below > starts
    bin_sums = np.zeros(len(edges))
    if filled.any():
        # One pass over the sorted values: each filled bin's sum (empty bins add nothing).
        bin_sums[filled] = np.add.reduceat(ordered[: at_or_below[-1]], starts[filled])
    return at_or_below, np.cumsum(bin_sums) - at_or_below * edges[0]


def _profile_numeric(values: pd.Series, bins: int) -> NumericProfile:
    ordered, missing = _finite_sorted(values)
    if len(ordered) == 0:
        empty = np.zeros(0)
        return NumericProfile(empty, empty, empty, 0, missing, 1.0, np.zeros(0, dtype="int64"))
    levels = np.linspace(0.0, 1.0, bins + 1)
    edges = np.unique(np.quantile(ordered, levels, method="inverted_cdf"))
    at_or_below, sums = _cumulative(ordered, edges)
    cdf = at_or_below / len(ordered)
    lower_partial_mean = ((edges - edges[0]) * at_or_below - sums) / len(ordered)
    q25, q75 = np.quantile(ordered, [0.25, 0.75])
    # Rounding leaves a constant column a spread of ~1e-17, which would blow every distance up.
    tiny = 1e-9 * max(1.0, float(np.abs(ordered).max()))
    scale = next((s for s in (float(q75 - q25), float(np.std(ordered))) if s > tiny), 1.0)
    deciles = np.unique(np.quantile(ordered, np.linspace(0.1, 0.9, 9), method="inverted_cdf"))
    psi_edges = np.searchsorted(edges, deciles)
    return NumericProfile(edges, cdf, lower_partial_mean, len(ordered), missing, scale, psi_edges)


def _value_counts(values: pd.Series) -> pd.Series:
    """Count the column's values by name (missing values as ``MISSING``)."""
    counts = values.value_counts(dropna=False, sort=False)
    counts = counts[counts > 0]
    counts.index = pd.Index([_label(c) for c in counts.index], dtype=object)
    if counts.index.has_duplicates:  # 1 and 1.0, or None and NaN, name one category
        counts = counts.groupby(level=0, sort=False).sum()
    return counts


def _label(value: Any) -> str:
    """Return a category's name; whole floats are named as integers (a code column read with NaNs)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _profile_categorical(values: pd.Series, min_share: float, max_categories: int) -> CategoricalProfile:
    counts = _value_counts(values)
    missing = int(counts.get(MISSING, 0))
    counts = counts[counts.index != MISSING]
    total = len(values)
    frequent = counts[counts >= min_share * total].sort_values(ascending=False, kind="stable")[:max_categories]
    kept = sorted(frequent.index)
    other = int(counts.sum()) - int(frequent.sum())
    rare = counts.drop(index=kept).sort_values(ascending=False, kind="stable")[:_RARE_KEPT]
    return CategoricalProfile(
        (*kept, OTHER, MISSING),
        np.array([*frequent.reindex(kept).to_numpy(), other, missing], dtype="int64"),
        frozenset(rare.index),
    )


def group_size(groups: pd.Series | None) -> float:
    """The size-weighted mean size of the groups of rows, ``sum(m^2) / sum(m)`` (1 without groups)."""
    if groups is None or groups.empty:
        return 1.0
    sizes = groups.value_counts(dropna=False).to_numpy(dtype="float64")
    return float((sizes**2).sum() / sizes.sum())


def _intraclass(cells: np.ndarray, groups: np.ndarray, *, cumulative: bool) -> float:
    """How alike a group's rows are in a coded column: its intraclass correlation, in [0, 1].

    Each indicator of the column (one per code, or per ``code <= k`` when ``cumulative``) is a
    share; rows in groups inflate the shares' variance by ``sum_g (S_g - m_g p)^2 / (n p (1 - p))``
    summed over indicators (``S_g`` a group's count, ``m_g`` its size), which is
    ``1 + (m_w - 1) * rho`` for the size-weighted mean group size ``m_w``: solved for ``rho``.
    """
    group_codes = pd.factorize(groups)[0]
    width = int(cells.max()) + 1 if len(cells) else 1
    table = np.bincount(group_codes * width + cells, minlength=(group_codes.max() + 1) * width).reshape(-1, width)
    sizes = table.sum(axis=1).astype("float64")
    if cumulative:
        table = np.cumsum(table, axis=1)[:, :-1]
    n = sizes.sum()
    weighted = float((sizes**2).sum() / n) if n else 1.0
    shares = table.sum(axis=0) / n if n else np.zeros(table.shape[1])
    independent = float((n * shares * (1 - shares)).sum())
    if weighted <= 1.0 or independent <= 0:
        return 0.0
    between = float(((table - np.outer(sizes, shares)) ** 2).sum())
    return float(np.clip((between / independent - 1.0) / (weighted - 1.0), 0.0, 1.0))


def _map(function: Any, items: Iterable[Any]) -> list[Any]:
    """Apply a numpy-heavy function to items on a few threads (sorting releases the GIL)."""
    items = list(items)
    workers = min(len(items), os.cpu_count() or 1, 8)
    if workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


def _check_columns(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataValidationError(f"columns {absent} are not in the table (it has {list(frame.columns)[:20]}...)")


def profile_frame(
    frame: pd.DataFrame,
    *,
    numeric: Iterable[str],
    categorical: Iterable[str],
    bins: int = 200,
    min_category_share: float = 0.005,
    max_categories: int = 200,
    groups: pd.Series | None = None,
) -> Profile:
    """Profile a reference table.

    Args:
        frame: Reference rows.
        numeric: Columns profiled as numbers.
        categorical: Columns profiled as categories.
        bins: Quantile levels per numeric column (the KS statistic's resolution is 1/bins).
        min_category_share: Categories rarer than this share are pooled into ``OTHER``.
        max_categories: Most categories kept per column; the rest are pooled into ``OTHER``.
        groups: The group of each row (rows of one group are alike: GDELT's events of one
            article), for the profile's ``group_size`` and each column's intraclass correlation.
            None: independent rows.

    Returns:
        The profile.

    Raises:
        ConfigError: When ``bins`` is below 10.
        DataValidationError: When a column is not in the table.
    """
    if bins < 10:
        raise ConfigError(f"bins={bins}: use at least 10 quantile levels")
    numeric, categorical = list(numeric), list(categorical)
    _check_columns(frame, [*numeric, *categorical])
    numeric_profiles = _map(lambda c: _profile_numeric(frame[c], bins), numeric)
    categorical_profiles = [_profile_categorical(frame[c], min_category_share, max_categories) for c in categorical]
    intraclass: dict[str, float] = {}
    if groups is not None:
        keys = groups.to_numpy()
        for name, p in zip(numeric, numeric_profiles, strict=True):
            values = frame[name].to_numpy(dtype="float64", na_value=np.nan)
            deciles = np.searchsorted(p.edges[p.psi_edges], values)
            intraclass[name] = _intraclass(
                np.where(np.isnan(values), len(p.psi_edges) + 1, deciles), keys, cumulative=True
            )
        for name in categorical:
            codes = pd.factorize(frame[name].astype(object), use_na_sentinel=False)[0]
            intraclass[name] = _intraclass(codes, keys, cumulative=False)
    return Profile(
        dict(zip(numeric, numeric_profiles, strict=True)),
        dict(zip(categorical, categorical_profiles, strict=True)),
        len(frame),
        group_size(groups),
        intraclass,
    )


def _count_numeric(values: pd.Series, profile: NumericProfile) -> NumericCounts:
    ordered, missing = _finite_sorted(values)
    edges = profile.edges
    if len(edges) == 0:
        return NumericCounts(np.zeros(0, dtype="int64"), np.zeros(0), len(ordered), missing, 0, 0.0)
    at_or_below, sums = _cumulative(ordered, edges)
    below = int(np.searchsorted(ordered, edges[0], side="left"))
    above = int(at_or_below[-1])
    above_mass = float(ordered[above:].sum()) - (len(ordered) - above) * float(edges[-1])
    return NumericCounts(at_or_below, sums, len(ordered), missing, below, above_mass)


def _count_categorical(values: pd.Series, profile: CategoricalProfile) -> CategoricalCounts:
    counts = _value_counts(values)
    index = {name: i for i, name in enumerate(profile.categories)}
    out = np.zeros(len(profile.categories), dtype="int64")
    unseen: dict[str, int] = {}
    other = index[OTHER]
    for name, count in counts.items():
        position = index.get(name)
        if position is not None:
            out[position] += int(count)
            continue
        out[other] += int(count)
        if name not in profile.rare:
            unseen[name] = int(count)
    top = sorted(unseen.items(), key=lambda item: (-item[1], item[0]))[:_UNSEEN_KEPT]
    return CategoricalCounts(out, dict(top))


def summarize_frame(frame: pd.DataFrame, profile: Profile, *, groups: pd.Series | None = None) -> WindowSummary:
    """Summarise a window of rows against a reference profile.

    Args:
        frame: The window's rows (all of them, or one partition).
        profile: The reference profile.
        groups: The group of each row when rows come in alike groups (None: independent), for
            the summary's ``group_size``.

    Returns:
        The window's summary; summaries of partitions merge with ``WindowSummary.merge``.

    Raises:
        DataValidationError: When a profiled column is not in the table.
    """
    _check_columns(frame, profile.columns)
    numeric = _map(lambda item: _count_numeric(frame[item[0]], item[1]), profile.numeric.items())
    categorical = {name: _count_categorical(frame[name], p) for name, p in profile.categorical.items()}
    return WindowSummary(dict(zip(profile.numeric, numeric, strict=True)), categorical, len(frame), group_size(groups))


def _summarize_part(part: pd.DataFrame, profile: Profile, group_column: str | None) -> WindowSummary:
    return summarize_frame(part, profile, groups=part[group_column] if group_column else None)


def summarize_partitions(frame: Any, profile: Profile, *, group_column: str | None = None) -> WindowSummary:
    """Summarise a Dask DataFrame's window against a profile, partition by partition.

    Every partition is summarised where it is read and only the summaries (kilobytes) travel and
    merge, so the window's length does not bound memory: each worker thread holds one partition
    at a time, about three times its in-memory size while it is read and counted (keep
    partitions near 250k rows: ``dd.read_parquet(..., split_row_groups=True)``).

    Args:
        frame: A ``dask.dataframe.DataFrame`` with the profiled columns.
        profile: The reference profile.
        group_column: A column grouping alike rows (see ``Profile.group_size``); a group is
            taken to lie within one partition (GDELT: an article's events arrive in one batch).

    Returns:
        The window's summary, equal to ``summarize_frame`` of the whole window.

    Raises:
        DataValidationError: When a profiled column is not in the frame.
    """
    import functools

    import dask

    _check_columns(frame, profile.columns)
    columns = [*profile.columns, *([group_column] if group_column else [])]
    parts = frame[columns].to_delayed()
    summaries = [dask.delayed(_summarize_part)(part, profile, group_column) for part in parts]
    merged = dask.delayed(functools.reduce)(WindowSummary.merge, summaries)
    summary: WindowSummary = merged.compute()
    return summary
