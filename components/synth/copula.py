"""A Gaussian copula fitted to a real table: the fast default generator (no GPU, no torch).

Each column is moved to standard normal scores through its own empirical distribution; the
correlation of those scores is the copula. Sampling draws correlated normals and maps each back
through the column's empirical quantiles, so every margin is reproduced as it was (GDELT's
discrete, heavy-tailed counts stay discrete and heavy-tailed: parametric margins, as the
``copulas`` package fits them, smooth them away) and the pairwise dependence is kept as far as
a Gaussian copula can keep it.

* numeric columns: mid-ranks → normal scores; sampled values are drawn from the real values'
  quantiles (only values that occurred); a missing share is kept and drawn independently;
* categorical columns: categories ordered, each an interval of [0, 1] as wide as its share; a
  row's score is a uniform draw inside its category's interval (SDV's frequency encoding);
  missing is a category of its own. The order is by frequency, or, given ``order_by`` (the
  label's numeric source), by that column's mean in each category: a copula only keeps
  monotone dependence, and ordered so a category's effect on the label is monotone, which a
  model must learn from the synthetic rows is kept;
* a column that a categorical column determines (GDELT's EventRootCode, QuadClass and
  GoldsteinScale follow from EventCode) is not modelled: it is looked up from the sampled value
  of the column that determines it, so no synthetic row breaks a rule the real rows never break.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from components.common.errors import ConfigError

__all__ = ["GaussianCopula"]

_MISSING = "\x00missing"


@dataclass
class _Numeric:
    quantiles: np.ndarray
    missing: float


@dataclass
class _Categorical:
    categories: list[object]
    edges: np.ndarray  # cumulative shares, starting at 0


@dataclass
class GaussianCopula:
    """A Gaussian copula over numeric and categorical columns.

    Args:
        numeric: Numeric columns.
        categorical: Categorical columns (any values; compared as given).
        levels: Quantile levels kept per numeric column (memory does not grow with the rows).
        seed: Seed of the uniform draws inside categories while fitting.
        order_by: A numeric column whose mean orders each categorical column's categories
            ('' for frequency order).
    """

    numeric: Sequence[str]
    categorical: Sequence[str]
    levels: int = 2000
    seed: int = 0
    order_by: str = ""
    _numeric: dict[str, _Numeric] = field(default_factory=dict, init=False, repr=False)
    _categorical: dict[str, _Categorical] = field(default_factory=dict, init=False, repr=False)
    _cholesky: np.ndarray | None = field(default=None, init=False, repr=False)
    _derived: dict[str, tuple[str, dict[object, object]]] = field(default_factory=dict, init=False, repr=False)

    @property
    def columns(self) -> list[str]:
        """The columns, numeric first."""
        return [*self.numeric, *self.categorical]

    @property
    def modelled(self) -> list[str]:
        """The columns the copula models (the others are looked up from these)."""
        return [c for c in self.columns if c not in self._derived]

    def _find_derived(self, frame: pd.DataFrame) -> None:
        """Columns a categorical column (finer, its values repeated) determines on every row."""
        codes = {c: frame[c].astype("object").where(frame[c].notna(), _MISSING) for c in self.columns}
        parents = sorted(self.categorical, key=lambda c: (-codes[c].nunique(), c))
        for column in sorted(self.columns, key=lambda c: (-codes[c].nunique(), c)):
            for parent in parents:
                if parent == column or parent in self._derived or codes[parent].nunique() <= codes[column].nunique():
                    continue
                pairs = pd.DataFrame({"p": codes[parent], "c": codes[column]})
                repeated = len(pairs) >= 5 * pairs["p"].nunique()  # a near-unique column "determines" anything
                if repeated and (pairs.groupby("p")["c"].nunique() <= 1).all():
                    mapping = pairs.drop_duplicates("p").set_index("p")["c"].to_dict()
                    self._derived[column] = (parent, mapping)
                    break

    def fit(self, frame: pd.DataFrame) -> "GaussianCopula":
        """Fit the margins and the copula's correlation.

        Raises:
            ConfigError: When a column is missing or there are fewer than 10 rows.
        """
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ConfigError(f"the frame has no column(s) {missing} to fit")
        if len(frame) < 10:
            raise ConfigError(f"{len(frame)} rows are too few to fit a copula")
        rng = np.random.default_rng(self.seed)
        self._find_derived(frame)
        numeric = [c for c in self.numeric if c not in self._derived]
        categorical = [c for c in self.categorical if c not in self._derived]
        scores = np.zeros((len(frame), len(numeric) + len(categorical)))
        for j, column in enumerate(numeric):
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")
            present = ~np.isnan(values)
            if not present.any():
                raise ConfigError(f"numeric column {column!r} has no values")
            kept = values[present]
            levels = np.linspace(0, 1, min(self.levels, len(kept)))
            self._numeric[column] = _Numeric(
                np.quantile(kept, levels, method="inverted_cdf"), float(1 - present.mean())
            )
            ranks = stats.rankdata(kept) / (len(kept) + 1)
            scores[present, j] = stats.norm.ppf(ranks)
        for k, column in enumerate(categorical, start=len(numeric)):
            values = frame[column].astype("object").where(frame[column].notna(), _MISSING)
            counts = values.value_counts(sort=True)
            if self.order_by:
                means = pd.to_numeric(frame[self.order_by], errors="coerce").groupby(values).mean()
                counts = counts.loc[means.reindex(counts.index).fillna(means.mean()).sort_values(kind="stable").index]
            edges = np.concatenate([[0.0], np.cumsum(counts.to_numpy(dtype="float64")) / len(values)])
            index = {category: i for i, category in enumerate(counts.index)}
            position = values.map(index).to_numpy(dtype="int64")
            low, high = edges[position], edges[position + 1]
            u = np.clip(low + rng.random(len(values)) * (high - low), 1e-9, 1 - 1e-9)
            scores[:, k] = stats.norm.ppf(u)
            self._categorical[column] = _Categorical(list(counts.index), edges)
        correlation = np.corrcoef(scores, rowvar=False) if scores.shape[1] > 1 else np.ones((1, 1))
        correlation = np.nan_to_num(np.atleast_2d(correlation))
        np.fill_diagonal(correlation, 1.0)
        values, vectors = np.linalg.eigh(correlation)  # nearest positive definite: clip the eigenvalues
        fixed = vectors @ np.diag(np.clip(values, 1e-6, None)) @ vectors.T
        scale = np.sqrt(np.diag(fixed))
        self._cholesky = np.linalg.cholesky(fixed / np.outer(scale, scale))
        return self

    def sample(self, rows: int, *, seed: int = 0) -> pd.DataFrame:
        """Draw synthetic rows.

        Raises:
            ConfigError: When the copula was not fitted.
        """
        if self._cholesky is None:
            raise ConfigError("fit the copula before sampling")
        rng = np.random.default_rng(seed)
        u = stats.norm.cdf(rng.standard_normal((rows, len(self._cholesky))) @ self._cholesky.T)
        out: dict[str, object] = {}
        numeric = [c for c in self.numeric if c not in self._derived]
        for j, column in enumerate(numeric):
            margin = self._numeric[column]
            position = np.minimum((u[:, j] * len(margin.quantiles)).astype("int64"), len(margin.quantiles) - 1)
            values = margin.quantiles[position].astype("float64")
            values[rng.random(rows) < margin.missing] = np.nan
            out[column] = values
        for k, column in enumerate(self.modelled[len(numeric) :], start=len(numeric)):
            shares = self._categorical[column]
            position = np.clip(np.searchsorted(shares.edges, u[:, k], side="right") - 1, 0, len(shares.categories) - 1)
            picked = np.asarray(shares.categories, dtype="object")[position]
            out[column] = picked
        for column, (parent, mapping) in self._derived.items():
            looked_up = pd.Series(out[parent]).map(mapping)
            if column in self.numeric:
                out[column] = pd.to_numeric(looked_up.where(looked_up != _MISSING), errors="coerce").to_numpy()
            else:
                out[column] = looked_up.to_numpy()
        for column in self.categorical:
            picked = np.asarray(out[column], dtype="object")
            out[column] = pd.Series(picked).where(picked != _MISSING, None).to_numpy()
        return pd.DataFrame(out)[self.columns]
