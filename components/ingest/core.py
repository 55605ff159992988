"""Ingest GDELT export files into the lake: sources, parsing, and the Dask-driven ingestion run.

The public API of the ingest stage; the parts live in private modules:

- ``_sources``: where files come from — the GDELT feed over HTTP (``lastupdate.txt``,
  ``masterfilelist.txt``, verified downloads), a local folder, an S3 bucket;
- ``_parse``: one file's bytes to typed rows, quarantining what cannot be read;
- ``_cluster``: the Dask cluster a run works on (local, a Kubernetes DaskCluster, or given);
- ``_lake``: the lake's layout, its manifest, and the run that ingests a range of batches on Dask.
"""

from pathlib import Path

from components.ingest._cluster import dask_client, dask_cluster_spec
from components.ingest._lake import (
    IngestSummary,
    ManifestEntry,
    Status,
    compact_manifest,
    events_key,
    ingest,
    ingest_file,
    ingest_to_table,
    ingested_batches,
    raw_key,
    read_batch,
    read_manifest,
)
from components.ingest._parse import LAKE_SCHEMA, LINE_COLUMN, SOURCE_COLUMN, ParsedExport, parse_export, parse_file
from components.ingest._sources import (
    DirectorySource,
    FetchError,
    HttpSource,
    ObjectStoreSource,
    Source,
    SourceFile,
    batch_of,
    open_source,
    parse_file_list,
)

__all__ = [
    "LAKE_SCHEMA",
    "LINE_COLUMN",
    "SOURCE_COLUMN",
    "DirectorySource",
    "FetchError",
    "HttpSource",
    "IngestSummary",
    "ManifestEntry",
    "ObjectStoreSource",
    "ParsedExport",
    "Source",
    "SourceFile",
    "Status",
    "batch_of",
    "compact_manifest",
    "dask_client",
    "dask_cluster_spec",
    "events_key",
    "ingest",
    "ingest_file",
    "ingest_to_table",
    "ingested_batches",
    "open_source",
    "parse_export",
    "parse_file",
    "parse_file_list",
    "raw_key",
    "read_batch",
    "read_export",
    "read_manifest",
]


def read_export(path: Path) -> ParsedExport:
    """Parse one local export file (plain or zipped) into typed rows and rejections."""
    return parse_file(path.read_bytes(), path.name)
