"""The MinIO server fixture, through the two clients the lake uses: ``minio`` and pyarrow's S3 filesystem."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from minio import Minio
from pyarrow import fs

from tests.servers import MinioServer

pytestmark = pytest.mark.integration


def test_minio_client_round_trips_an_object(minio_server: MinioServer) -> None:
    client = Minio(minio_server.address, minio_server.access_key, minio_server.secret_key, secure=False)
    client.make_bucket("roundtrip")
    payload = b"GLOBALEVENTID\tSQLDATE\n1203974017\t20241022\n"
    client.put_object("roundtrip", "raw/batch.tsv", io.BytesIO(payload), length=len(payload))

    response = client.get_object("roundtrip", "raw/batch.tsv")
    try:
        assert response.read() == payload
    finally:
        response.close()
        response.release_conn()
    assert "roundtrip" in [b.name for b in client.list_buckets()]


def test_pyarrow_s3_filesystem_round_trips_parquet(minio_server: MinioServer) -> None:
    s3 = fs.S3FileSystem(
        endpoint_override=minio_server.address,
        scheme="http",
        access_key=minio_server.access_key,
        secret_key=minio_server.secret_key,
        region="us-east-1",
        allow_bucket_creation=True,
    )
    s3.create_dir("lake")
    table = pa.table({"GLOBALEVENTID": [1203974017, 1203974018], "AvgTone": [-6.25, 1.5], "QuadClass": ["4", "1"]})
    pq.write_table(table, "lake/validated/20241022130000.parquet", filesystem=s3)

    assert pq.read_table("lake/validated/20241022130000.parquet", filesystem=s3).equals(table)

    uri = (
        f"s3://{minio_server.access_key}:{minio_server.secret_key}@lake/validated"
        f"?endpoint_override={minio_server.address}&scheme=http&region=us-east-1"
    )
    from_uri, prefix = fs.FileSystem.from_uri(uri)
    assert prefix == "lake/validated"
    assert pq.read_table(f"{prefix}/20241022130000.parquet", filesystem=from_uri).equals(table)
