"""Large synthetic GDELT 2.0 feeds: days to months of 15-minute export files, for the benchmarks.

A Gaussian copula (``components.synth.copula``) is fitted to every field of the real exports
but the identifiers and times (61 columns less GLOBALEVENTID, the dates and SOURCEURL), with
the event's age (DATEADDED − SQLDATE) as one more column; the codes a finer code determines
(EventRootCode from EventCode, a place's country, ADM1 code and coordinates from its name) are
looked up, not drawn. Each batch's rows then get what GDELT's own would have: consecutive
GLOBALEVENTIDs, the batch's DATEADDED, an SQLDATE that many days earlier (MonthYear, Year,
FractionDate from it), and SOURCEURLs that group the rows into articles of the real sizes.
Files are written as GDELT's exports are once unzipped (tab-separated, no header,
``YYYYMMDDHHMMSS.export.CSV``), so ingestion reads them as it reads the real ones.

Rows of one article do not share their tone and actors as real ones do (they are drawn one by
one): use real exports where the design effect matters (the drift calibration).
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.common.errors import ConfigError
from components.common.schema import COLUMN_KINDS, GDELT2_COLUMNS

__all__ = ["FeedWritten", "SyntheticFeed"]

_KEYS = ("GLOBALEVENTID", "SQLDATE", "MonthYear", "Year", "FractionDate", "DATEADDED", "SOURCEURL")
_AGE = "event_age_days"
_CATEGORICAL_INTS = ("QuadClass", "IsRootEvent", "Actor1Geo_Type", "Actor2Geo_Type", "ActionGeo_Type")


@dataclass(frozen=True)
class FeedWritten:
    """What ``SyntheticFeed.write`` wrote.

    Attributes:
        files: The export files, oldest first.
        rows: Rows written.
        bytes: Bytes written.
        seconds: Wall-clock seconds.
    """

    files: list[Path]
    rows: int
    bytes: int
    seconds: float


class SyntheticFeed:
    """A copula over the exports' fields, fitted once, that writes 15-minute batches.

    Args:
        exports: Real GDELT 2.0 export files (plain ``.export.CSV``) to fit to.
        seed: Seed of the fit.
    """

    def __init__(self, exports: list[Path], *, seed: int = 0) -> None:
        from components.ingest.core import read_export
        from components.synth.copula import GaussianCopula
        from components.validate.core import validate_events

        frames = []
        for path in exports:
            table = read_export(path).table
            if table is not None:
                frames.append(validate_events(table.to_pandas()).valid)
        if not frames:
            raise ConfigError(f"no readable GDELT 2.0 export among {len(exports)} file(s) to fit a feed to")
        real = pd.concat(frames, ignore_index=True)
        added = pd.to_datetime(real["DATEADDED"].astype("string"), format="%Y%m%d%H%M%S", errors="coerce")
        happened = pd.to_datetime(real["SQLDATE"].astype("string"), format="%Y%m%d", errors="coerce")
        real[_AGE] = (added.dt.normalize() - happened).dt.days.clip(lower=0)
        fields = [c for c in GDELT2_COLUMNS if c not in _KEYS]
        numeric = [c for c in fields if COLUMN_KINDS[c] in ("int", "float") and c not in _CATEGORICAL_INTS]
        categorical = [c for c in fields if c not in numeric]
        self.integers = {c for c in fields if COLUMN_KINDS[c] == "int"} | {_AGE}
        self.copula = GaussianCopula([*numeric, _AGE], categorical, seed=seed).fit(real)
        sizes = real.groupby(["DATEADDED", "SOURCEURL"], dropna=False).size().to_numpy()
        self.article_sizes = sizes[sizes > 0]
        self.next_id = int(pd.to_numeric(real["GLOBALEVENTID"]).max()) + 1

    def batch(self, at: dt.datetime, rows: int, *, seed: int) -> pd.DataFrame:
        """One batch's rows, every export column in GDELT's order (values as text, '' for empty)."""
        rng = np.random.default_rng(seed)
        frame = self.copula.sample(rows, seed=seed)
        age = pd.to_numeric(frame.pop(_AGE)).fillna(0).clip(lower=0).round().astype("int64")
        happened = pd.Timestamp(at.date()) - pd.to_timedelta(age, unit="D")
        batch_id = f"{at:%Y%m%d%H%M%S}"
        frame["GLOBALEVENTID"] = np.arange(self.next_id, self.next_id + rows)
        self.next_id += rows
        frame["SQLDATE"] = happened.dt.strftime("%Y%m%d")
        frame["MonthYear"] = happened.dt.strftime("%Y%m")
        frame["Year"] = happened.dt.year
        frame["FractionDate"] = (happened.dt.year + (happened.dt.dayofyear - 1) / 365).round(4)
        frame["DATEADDED"] = batch_id
        articles = np.repeat(np.arange(rows), rng.choice(self.article_sizes, size=rows))[:rows]
        frame["SOURCEURL"] = [f"https://news.example.invalid/{batch_id}/{a}" for a in articles]
        out = frame[list(GDELT2_COLUMNS)].copy()
        for column in out.columns:
            values = out[column]
            if column in self.integers:
                numbers = pd.to_numeric(values, errors="coerce").round()
                out[column] = numbers.map(lambda v: "" if pd.isna(v) else str(int(v)))
            else:
                out[column] = values.map(
                    lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                )
        return out

    def write(self, folder: Path, *, start: dt.datetime, batches: int, rows: int, seed: int = 0) -> FeedWritten:
        """Write ``batches`` consecutive 15-minute exports from ``start`` into ``folder``.

        Returns:
            The files, rows, bytes and seconds.
        """
        import time

        began = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        files, total = [], 0
        for index in range(batches):
            at = start + dt.timedelta(minutes=15 * index)
            path = folder / f"{at:%Y%m%d%H%M%S}.export.CSV"
            text = "\n".join("\t".join(row) for row in self.batch(at, rows, seed=seed + index).itertuples(index=False))
            path.write_text(text + "\n", encoding="utf-8")
            files.append(path)
            total += path.stat().st_size
        return FeedWritten(files, rows * batches, total, time.perf_counter() - began)
