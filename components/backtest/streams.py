"""Labelled streams for the backtest suite: real histories and River's synthetic drift generators.

A stream is a frame of rows in time order with a binary ``label`` column. The suite mixes:

* real histories: Elec2, GDELT 2.0 exports (the gdelt-tone task, rows in export order), the
  credit-card transactions (in ``Time`` order);
* synthetic streams from River's generators, one per kind of change, each with a seed:

  - ``abrupt``: Agrawal's classification function switches twice (at 1/3 and 2/3 of the rows);
  - ``gradual``: one Agrawal function blends into another over the middle 40% of the rows;
  - ``incremental``: a rotating hyperplane (every row moves the concept a little);
  - ``recurring``: two SEA concepts alternate every sixth of the rows;
  - ``covariate``: one fixed Agrawal concept while the rows' salaries and ages move across
    their range (P(x) changes, P(y|x) does not);
  - ``prior``: one fixed Agrawal concept while the positive rate swings from 50% to 15% and back
    (P(y) changes, P(x|y) does not);
  - ``stationary``: one fixed Agrawal concept (nothing changes).

* a time-shuffled copy of any stream (its rows in a random order): the same rows without drift,
  where a policy that retrains for drift is wrong.

Each generator adds label noise (5%), as real labels have.
"""

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from components.common.errors import ConfigError

__all__ = ["LABEL", "SYNTHETIC_KINDS", "shuffled", "synthetic_frame"]

LABEL = "label"
SYNTHETIC_KINDS = ("abrupt", "gradual", "incremental", "recurring", "covariate", "prior", "stationary")

# Agrawal's ten functions, paired so that each pair's concepts differ (seed picks the pair).
_AGRAWAL_PAIRS = ((0, 2), (1, 4), (2, 7), (4, 8), (3, 6), (6, 9))
_NOISE = 0.05


def _take(generator: Any, rows: int) -> pd.DataFrame:
    records = [{**x, LABEL: int(y)} for x, y in itertools.islice(generator, rows)]
    return pd.DataFrame.from_records(records)


def _agrawal(function: int, seed: int, rows: int) -> pd.DataFrame:
    from river.datasets import synth

    return _take(synth.Agrawal(classification_function=function, seed=seed, perturbation=_NOISE), rows)


def _switching(segments: list[tuple[Any, int]]) -> pd.DataFrame:
    """Concatenate segments of rows, each from its own generator."""
    return pd.concat([_take(generator, rows) for generator, rows in segments], ignore_index=True)


def _resampled(pool: pd.DataFrame, weights: Iterator[np.ndarray], rows: int, batch: int, seed: int) -> pd.DataFrame:
    """Draw ``rows`` rows from ``pool`` without replacement, ``batch`` at a time, by time-varying weights."""
    rng = np.random.default_rng(seed)
    free = np.ones(len(pool), dtype=bool)
    chosen: list[np.ndarray] = []
    for start in range(0, rows, batch):
        w = next(weights) * free
        take = min(batch, rows - start)
        picked = rng.choice(len(pool), size=take, replace=False, p=w / w.sum())
        free[picked] = False
        chosen.append(picked)
    return pool.iloc[np.concatenate(chosen)].reset_index(drop=True)


def _noisy(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    flip = np.random.default_rng(seed + 7919).random(len(frame)) < _NOISE
    frame[LABEL] = np.where(flip, 1 - frame[LABEL], frame[LABEL])
    return frame


def synthetic_frame(kind: str, *, seed: int = 1, rows: int = 40_000) -> pd.DataFrame:
    """Rows of one synthetic drift stream, in time order, with a ``label`` column.

    Args:
        kind: One of ``SYNTHETIC_KINDS``.
        seed: The generators' seed (another seed: other rows and, for Agrawal kinds, other concepts).
        rows: Rows in the stream.

    Returns:
        The frame (numeric features, ``label`` 0/1).

    Raises:
        ConfigError: On an unknown kind.
    """
    from river.datasets import synth

    first, second = _AGRAWAL_PAIRS[seed % len(_AGRAWAL_PAIRS)]
    third = rows - 2 * (rows // 3)
    if kind == "abrupt":
        frame = _switching([
            (synth.Agrawal(classification_function=first, seed=seed, perturbation=_NOISE), rows // 3),
            (synth.Agrawal(classification_function=second, seed=seed + 1, perturbation=_NOISE), rows // 3),
            (synth.Agrawal(classification_function=first, seed=seed + 2, perturbation=_NOISE), third),
        ])  # fmt: skip
        return _noisy(frame, seed)
    if kind == "gradual":
        stream = synth.ConceptDriftStream(
            stream=synth.Agrawal(classification_function=first, seed=seed, perturbation=_NOISE),
            drift_stream=synth.Agrawal(classification_function=second, seed=seed + 1, perturbation=_NOISE),
            position=rows // 2, width=int(rows * 0.4), seed=seed,
        )  # fmt: skip
        return _noisy(_take(stream, rows), seed)
    if kind == "incremental":
        hyperplane = synth.Hyperplane(seed=seed, n_features=10, n_drift_features=5, mag_change=0.002,
                                      noise_percentage=_NOISE, sigma=0.1)  # fmt: skip
        return _take(hyperplane, rows)
    if kind == "recurring":
        segment = math.ceil(rows / 6)
        variants = (seed % 4, (seed + 2) % 4)
        frame = _switching([
            (synth.SEA(variant=variants[i % 2], noise=_NOISE, seed=seed + i), min(segment, rows - i * segment))
            for i in range(6)
        ])  # fmt: skip
        return frame
    if kind in ("covariate", "prior", "stationary"):
        pool = _agrawal(first, seed, rows * 2 if kind != "stationary" else rows)
        if kind == "stationary":
            return _noisy(pool, seed)
        batches = 80
        step = math.ceil(rows / batches)
        if kind == "covariate":
            position = (pool["salary"].rank(pct=True).to_numpy() + pool["age"].rank(pct=True).to_numpy()) / 2

            def moving() -> Iterator[np.ndarray]:
                for i in range(batches):
                    centre = 0.15 + 0.7 * i / (batches - 1)
                    yield np.exp(-0.5 * ((position - centre) / 0.12) ** 2) + 1e-9

            return _noisy(_resampled(pool, moving(), rows, step, seed), seed)
        labels = pool[LABEL].to_numpy()

        def swinging() -> Iterator[np.ndarray]:
            base = labels.mean()
            for i in range(batches):
                rate = 0.325 + 0.175 * math.cos(2 * math.pi * i / batches)  # 50% → 15% → 50%
                yield np.where(labels == 1, rate / base, (1 - rate) / (1 - base))

        return _noisy(_resampled(pool, swinging(), rows, step, seed), seed)
    raise ConfigError(f"unknown synthetic stream kind {kind!r}; known: {SYNTHETIC_KINDS}")


def shuffled(frame: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """The same rows in a random order: a copy of the stream without drift."""
    order = np.random.default_rng(seed).permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True)
