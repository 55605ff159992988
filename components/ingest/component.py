"""KFP wrapper of the ingest stage."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def ingest_gdelt(
    source: str,
    lake_dir: str,
    since: str,
    until: str,
    workers: int,
    cluster: str,
    raw: Output[Dataset],
    summary: Output[Artifact],
) -> NamedTuple("Ingest", [("Output", str), ("batches", int), ("rows", int)]):
    """Ingest GDELT batches into the lake on Dask and hand the range's typed rows on.

    Args:
        source: GDELT feed base URL (``lastupdate.txt``/``masterfilelist.txt``), ``s3://`` prefix
            or local folder.
        lake_dir: The lake: a local folder or ``s3://bucket/prefix`` (rejects go to
            ``quarantine/<batch_id>/``, every fetched file to ``raw/``).
        since: First batch, ``YYYYMMDD[HHMMSS]`` ('' for the oldest; ``latest`` for only the
            source's newest batch).
        until: Last batch ('' for the newest).
        workers: Dask workers (0 ingests in this pod, fine for one 15-minute batch).
        cluster: ``local`` (a LocalCluster in this pod), ``kubernetes`` (a KubeCluster on our
            image, via the Dask operator) or a scheduler address.
        raw: The range's typed rows (Parquet).
        summary: What the run did: files, rows, quarantined files and why (JSON).

    Returns:
        The newest batch of the range (``Output``), the number of batches and rows.
    """
    from pathlib import Path

    from components.common.images import COMPONENTS_IMAGE
    from components.common.store import Store
    from components.ingest.core import ingest_to_table, open_source

    batches, rows = ingest_to_table(
        open_source(source),
        Store(lake_dir),
        since=since or None,
        until=until or None,
        workers=workers,
        cluster=cluster,
        image=COMPONENTS_IMAGE,
        table_path=Path(raw.path),
        summary_path=Path(summary.path),
    )
    raw.metadata.update(batches=len(batches), rows=rows)
    return (batches[-1], len(batches), rows)
