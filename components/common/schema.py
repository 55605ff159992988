"""The GDELT Events table: column names of the 2.0 and 1.0 formats and the type of each column.

GDELT 2.0 exports have 61 tab-separated fields. GDELT 1.0 daily exports have 58 (no
``*Geo_ADM2Code`` columns, DATEADDED as YYYYMMDD) or 57 (1.0 backfile rows without SOURCEURL).
Everything is mapped onto the 2.0 layout; columns a format lacks are left empty.
"""

from enum import StrEnum

__all__ = [
    "COLUMN_KINDS",
    "GDELT1_COLUMNS",
    "GDELT2_COLUMNS",
    "REQUIRED_COLUMNS",
    "ColumnKind",
]


class ColumnKind(StrEnum):
    """How a GDELT column is typed after validation."""

    INT = "int"
    FLOAT = "float"
    STRING = "string"
    DATE8 = "date8"  # YYYYMMDD, kept as an int
    TIMESTAMP14 = "timestamp14"  # YYYYMMDDHHMMSS, kept as an int


def _actor(prefix: str) -> list[str]:
    return [
        f"{prefix}Code",
        f"{prefix}Name",
        f"{prefix}CountryCode",
        f"{prefix}KnownGroupCode",
        f"{prefix}EthnicCode",
        f"{prefix}Religion1Code",
        f"{prefix}Religion2Code",
        f"{prefix}Type1Code",
        f"{prefix}Type2Code",
        f"{prefix}Type3Code",
    ]


def _geo(prefix: str, *, with_adm2: bool) -> list[str]:
    cols = [
        f"{prefix}Geo_Type",
        f"{prefix}Geo_FullName",
        f"{prefix}Geo_CountryCode",
        f"{prefix}Geo_ADM1Code",
    ]
    if with_adm2:
        cols.append(f"{prefix}Geo_ADM2Code")
    return [*cols, f"{prefix}Geo_Lat", f"{prefix}Geo_Long", f"{prefix}Geo_FeatureID"]


_EVENT = [
    "IsRootEvent",
    "EventCode",
    "EventBaseCode",
    "EventRootCode",
    "QuadClass",
    "GoldsteinScale",
    "NumMentions",
    "NumSources",
    "NumArticles",
    "AvgTone",
]
_DATES = ["GLOBALEVENTID", "SQLDATE", "MonthYear", "Year", "FractionDate"]


def _layout(*, with_adm2: bool) -> tuple[str, ...]:
    geo = [c for p in ("Actor1", "Actor2", "Action") for c in _geo(p, with_adm2=with_adm2)]
    return (*_DATES, *_actor("Actor1"), *_actor("Actor2"), *_EVENT, *geo, "DATEADDED", "SOURCEURL")


GDELT2_COLUMNS: tuple[str, ...] = _layout(with_adm2=True)
"""The 61 columns of a GDELT 2.0 Events export, in file order."""

GDELT1_COLUMNS: tuple[str, ...] = _layout(with_adm2=False)
"""The 58 columns of a GDELT 1.0 Events export, in file order (57 without SOURCEURL)."""

_INT = {
    "GLOBALEVENTID",
    "MonthYear",
    "Year",
    "IsRootEvent",
    "QuadClass",
    "NumMentions",
    "NumSources",
    "NumArticles",
    "Actor1Geo_Type",
    "Actor2Geo_Type",
    "ActionGeo_Type",
}
_FLOAT = {
    "FractionDate",
    "GoldsteinScale",
    "AvgTone",
    "Actor1Geo_Lat",
    "Actor1Geo_Long",
    "Actor2Geo_Lat",
    "Actor2Geo_Long",
    "ActionGeo_Lat",
    "ActionGeo_Long",
}


def _kind(column: str) -> ColumnKind:
    if column == "SQLDATE":
        return ColumnKind.DATE8
    if column == "DATEADDED":
        return ColumnKind.TIMESTAMP14
    if column in _INT:
        return ColumnKind.INT
    if column in _FLOAT:
        return ColumnKind.FLOAT
    return ColumnKind.STRING


COLUMN_KINDS: dict[str, ColumnKind] = {c: _kind(c) for c in GDELT2_COLUMNS}
"""Type of every GDELT 2.0 column; codes (EventCode, *Geo_FeatureID, ...) stay strings."""

REQUIRED_COLUMNS: tuple[str, ...] = (
    "GLOBALEVENTID",
    "SQLDATE",
    "EventCode",
    "EventBaseCode",
    "EventRootCode",
    "QuadClass",
    "NumMentions",
    "NumSources",
    "NumArticles",
    "AvgTone",
    "DATEADDED",
)
"""Columns every valid event must fill: GDELT always writes them."""
