"""Where GDELT export files come from: the GDELT feed over HTTP, a local folder, or an S3 bucket.

Every source lists the export files it has (optionally within a time range) and fetches one
file's bytes, verified against the size and MD5 the listing published. The HTTP source follows
GDELT's protocol: ``lastupdate.txt`` names the newest batch and ``masterfilelist.txt`` every
batch, one ``<size> <md5> <url>`` line per file (export, mentions and gkg per batch). It retries
transient failures with exponential backoff, times out, and re-downloads the (large) master
list only when it changed (ETag / Last-Modified), keeping verified files in an optional cache.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

import pyarrow.fs as pafs
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from components.common.errors import IngestError
from components.common.lake import batch_of
from components.common.store import Store

__all__ = [
    "DirectorySource",
    "FetchError",
    "HttpSource",
    "ObjectStoreSource",
    "Source",
    "SourceFile",
    "batch_of",
    "open_source",
    "parse_file_list",
]

DEFAULT_FEED = "http://data.gdeltproject.org/gdeltv2/"


class FetchError(IngestError):
    """A source file could not be fetched or failed verification; a later run tries it again.

    Attributes:
        content: The bytes received when they failed verification (kept in quarantine).
    """

    def __init__(self, message: str, *, content: bytes = b"") -> None:
        super().__init__(message)
        self.content = content


@dataclass(frozen=True)
class SourceFile:
    """One export file a source offers.

    Attributes:
        name: File name, e.g. ``20241022130000.export.CSV.zip``.
        location: Where it is read from (URL, path or ``s3://`` URL).
        size: Published size in bytes (None when unknown).
        md5: Published hex MD5 (None when unknown).
    """

    name: str
    location: str
    size: int | None = None
    md5: str | None = None

    @property
    def batch_id(self) -> str:
        """The batch's timestamp, ``YYYYMMDDHHMMSS``."""
        return batch_of(self.name) or self.name.split(".")[0]


class Source(Protocol):
    """What every source offers."""

    location: str

    def list(self, since: str | None = None, until: str | None = None) -> list[SourceFile]:
        """List export files whose batch lies in ``[since, until]``, oldest first."""
        ...

    def latest(self) -> SourceFile:
        """The newest export file."""
        ...

    def fetch(self, file: SourceFile) -> bytes:
        """Fetch and verify a file's bytes; raise ``FetchError`` on failure."""
        ...


def _in_range(batch: str, since: str | None, until: str | None) -> bool:
    return (since is None or batch >= since.ljust(14, "0")) and (until is None or batch <= until.ljust(14, "9"))


def _verify(file: SourceFile, content: bytes) -> bytes:
    if file.size is not None and len(content) != file.size:
        raise FetchError(
            f"{file.name}: size {len(content)} bytes, listing says {file.size} (truncated transfer?)", content=content
        )
    if file.md5 is not None:
        digest = hashlib.md5(content).hexdigest()
        if digest != file.md5.lower():
            raise FetchError(f"{file.name}: md5 {digest} does not match the published {file.md5}", content=content)
    return content


def _sorted_exports(files: Iterable[SourceFile], since: str | None, until: str | None) -> list[SourceFile]:
    chosen = [f for f in files if batch_of(f.name) and _in_range(f.batch_id, since, until)]
    return sorted(chosen, key=lambda f: (f.batch_id, f.name))


def _newest(files: list[SourceFile], location: str) -> SourceFile:
    if not files:
        raise IngestError(f"no GDELT export files (YYYYMMDDHHMMSS.export.CSV[.zip]) in {location}")
    return files[-1]


def parse_file_list(text: str, base_url: str) -> list[SourceFile]:
    """Parse ``<size> <md5> <url>`` lines into export files (mentions and gkg lines are skipped).

    Args:
        text: A ``lastupdate.txt`` or ``masterfilelist.txt`` body.
        base_url: Resolves relative URLs.

    Returns:
        The export files listed, in listing order.
    """
    files = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or not (parts[0].isascii() and parts[0].isdigit()):  # "¹".isdigit() is True
            continue
        url = urljoin(base_url, parts[2])
        name = url.rsplit("/", 1)[-1]
        if batch_of(name):
            files.append(SourceFile(name=name, location=url, size=int(parts[0]), md5=parts[1].lower()))
    return files


@dataclass
class HttpSource:
    """The GDELT feed (or a mirror of it) over HTTP.

    Attributes:
        location: Base URL holding ``lastupdate.txt`` and ``masterfilelist.txt``.
        timeout_s: Connect and read timeout per request.
        retries: Retries of a failed request (connection errors, timeouts, 429 and 5xx).
        backoff_s: Backoff factor: waits of ``backoff_s * 2**n`` seconds between retries.
        cache_dir: Folder keeping the master list and verified downloads ('' for none).
    """

    location: str = DEFAULT_FEED
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.5
    cache_dir: str = ""
    _session: requests.Session | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.location = self.location if self.location.endswith("/") else self.location + "/"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_session": None}

    @property
    def session(self) -> requests.Session:
        """A session retrying transient failures with backoff."""
        if self._session is None:
            retry = Retry(
                total=self.retries,
                connect=self.retries,
                read=self.retries,
                status=self.retries,
                backoff_factor=self.backoff_s,
                status_forcelist=(429, 500, 502, 503, 504),
                allowed_methods=("GET", "HEAD"),
                raise_on_status=False,
            )
            session = requests.Session()
            session.mount("http://", HTTPAdapter(max_retries=retry))
            session.mount("https://", HTTPAdapter(max_retries=retry))
            self._session = session
        return self._session

    def _get(self, url: str, headers: dict[str, str] | None = None) -> requests.Response:
        try:
            response = self.session.get(url, timeout=self.timeout_s, headers=headers or {})
        except requests.RequestException as exc:
            if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
                raise FetchError(f"{url}: timed out after {self.timeout_s:g} s ({self.retries} retries)") from exc
            raise FetchError(f"{url}: request failed after {self.retries} retries: {exc}") from exc
        if response.status_code == 304:
            return response
        if response.status_code >= 400:
            raise FetchError(f"{url}: HTTP {response.status_code} {response.reason}")
        return response

    def _cached_list(self, name: str) -> str:
        """Fetch a listing, re-downloading only when the server says it changed."""
        url = urljoin(self.location, name)
        if not self.cache_dir:
            return self._get(url).text
        body, meta = Path(self.cache_dir) / name, Path(self.cache_dir) / f"{name}.etag"
        headers = {}
        if body.exists() and meta.exists():
            etag, _, modified = meta.read_text(encoding="utf-8").partition("\n")
            headers = {k: v for k, v in (("If-None-Match", etag), ("If-Modified-Since", modified)) if v}
        response = self._get(url, headers)
        if response.status_code == 304:
            return body.read_text(encoding="utf-8")
        body.parent.mkdir(parents=True, exist_ok=True)
        body.write_bytes(response.content)
        meta.write_text(
            f"{response.headers.get('ETag', '')}\n{response.headers.get('Last-Modified', '')}", encoding="utf-8"
        )
        return response.text

    def list(self, since: str | None = None, until: str | None = None) -> list[SourceFile]:
        """List the feed's export files in ``[since, until]`` from ``masterfilelist.txt``.

        A request for exactly the newest batch is answered from ``lastupdate.txt``: GDELT's master
        list holds every file since 2015 and is hundreds of megabytes.
        """
        if since and since == until and len(since) == 14:
            newest = self.latest()
            if newest.batch_id == since:
                return [newest]
        return _sorted_exports(parse_file_list(self._cached_list("masterfilelist.txt"), self.location), since, until)

    def latest(self) -> SourceFile:
        """The newest export file, from ``lastupdate.txt``."""
        files = parse_file_list(self._get(urljoin(self.location, "lastupdate.txt")).text, self.location)
        if not files:
            raise FetchError(f"{self.location}lastupdate.txt lists no export file")
        return files[0]

    def fetch(self, file: SourceFile) -> bytes:
        """Download a file (or take the cached copy with the same MD5) and verify it."""
        cached = Path(self.cache_dir) / "files" / file.name if self.cache_dir else None
        if cached is not None and cached.exists() and file.md5:
            content = cached.read_bytes()
            if hashlib.md5(content).hexdigest() == file.md5:
                return content
        content = _verify(file, self._get(file.location).content)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(content)
        return content


@dataclass
class DirectorySource:
    """Export files in a local folder (plain or zipped); sizes from the files, MD5s computed on fetch.

    Attributes:
        location: The folder.
    """

    location: str

    def list(self, since: str | None = None, until: str | None = None) -> list[SourceFile]:
        """List the folder's export files in ``[since, until]``."""
        folder = Path(self.location)
        if not folder.is_dir():
            raise IngestError(f"source folder {folder} does not exist")
        files = (SourceFile(p.name, str(p), p.stat().st_size) for p in folder.iterdir() if p.is_file())
        return _sorted_exports(files, since, until)

    def latest(self) -> SourceFile:
        """The newest export file."""
        return _newest(self.list(), self.location)

    def fetch(self, file: SourceFile) -> bytes:
        """Read and verify a file."""
        try:
            return _verify(file, Path(file.location).read_bytes())
        except OSError as exc:
            raise FetchError(f"{file.location}: {exc.strerror or exc}") from exc


@dataclass
class ObjectStoreSource:
    """Export files in an S3 bucket (MinIO, AWS); S3 ETags of single-part uploads are MD5s.

    Attributes:
        location: ``s3://bucket[/prefix]``.
        options: ``S3FileSystem`` options (from the environment when empty).
    """

    location: str
    options: dict[str, Any] = field(default_factory=dict)

    def _store(self) -> Store:
        return Store(self.location, self.options)

    def list(self, since: str | None = None, until: str | None = None) -> list[SourceFile]:
        """List the bucket prefix's export files in ``[since, until]``."""
        store = self._store()
        selector = pafs.FileSelector(store.root, recursive=False, allow_not_found=True)
        files = (
            SourceFile(info.base_name, f"s3://{info.path}", info.size)
            for info in store.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        )
        return _sorted_exports(files, since, until)

    def latest(self) -> SourceFile:
        """The newest export file."""
        return _newest(self.list(), self.location)

    def fetch(self, file: SourceFile) -> bytes:
        """Read and verify an object."""
        store = self._store()
        try:
            return _verify(file, store.get_bytes(file.location.removeprefix(f"s3://{store.root}/")))
        except OSError as exc:
            raise FetchError(f"{file.location}: {exc}") from exc


def open_source(location: str, *, cache_dir: str = "", timeout_s: float = 30.0, retries: int = 3) -> Source:
    """Return the source a location names: ``http(s)://`` feed, ``s3://`` bucket, or a folder.

    Args:
        location: Base URL of a GDELT feed, an ``s3://bucket/prefix``, or a local folder.
        cache_dir: Cache of the HTTP source ('' for none).
        timeout_s: HTTP timeout.
        retries: HTTP retries.

    Returns:
        The source.
    """
    if location.startswith(("http://", "https://")):
        return HttpSource(location, timeout_s=timeout_s, retries=retries, cache_dir=cache_dir)
    if location.startswith("s3://"):
        return ObjectStoreSource(location)
    return DirectorySource(location)
