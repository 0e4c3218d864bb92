"""GET /state, /positions, /orders.csv and /metadata: the files the loop published, served as bytes.

Nothing here serialises the state. A running executor's loop publishes its files in memory once
per change (``RunState.public``, built by ``store.publish.public_files``): a request takes the
current version of the file it needs, with the ETag the loop gave it, and its bytes (joined or
compressed once per version, by the first request that needs them, then kept). Without such a
version (a finished backtest, or an executor before its first publication) the file is read from
``public/``: each request ``stat``s it and, when it is the one already in memory (same inode,
mtime_ns and size), answers from the cached bytes; a changed file is read once, under a lock,
with its ETag (sha256 of the bytes). Either way a route's parsed form is derived once per version
(positions.json is parsed once per change for paging).

``/state`` sends ``state.json.gz`` with ``Content-Encoding: gzip`` to clients whose
``Accept-Encoding`` allows gzip and ``state.json`` to the rest; ``Vary: Accept-Encoding``; a
strong ETag per representation (the plain one is the ``etag`` in metadata.json) and 304 on a
matching ``If-None-Match``. Every route is a JSON 404 until the first publish.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.layout import RunFiles
from tradeexecutor.runstate.public import PublicDocument
from tradeexecutor.spill import SpillDamagedError
from tradeexecutor.web.params import BadParameter, choice_param, int_param
from tradeexecutor.webhook.app import add_json_route, get_options, get_runstate, json_error, json_response

logger = logging.getLogger(__name__)

__all__ = ["CachedFile", "FileCache", "accepts_gzip", "get_file_cache", "includeme"]

#: Position statuses /positions can filter on.
POSITION_STATUSES = ("open", "closed", "failed", "all")
#: Most positions one page may hold.
MAX_PAGE = 1000
#: Positions per page when no limit is given.
DEFAULT_PAGE = 100

_CACHE_SETTING = "tradeexecutor.file_cache"

#: Bodies at least this large are handed to the server's wsgi.file_wrapper rather than as one bytes chunk.
_STREAM_THRESHOLD = 256 * 1024
#: Block size the server reads such bodies in.
_STREAM_BLOCK = 256 * 1024

#: Documents of one path whose bytes could not be had that are remembered at most (publications in flight at once).
FAILED_KEPT = 8

#: Identifies one version of a file: (inode, mtime_ns, size).
FileKey = tuple[int, int, int]


@dataclass
class CachedFile:
    """One version of one published file held in memory."""

    #: The file's bytes.
    data: bytes
    #: (inode, mtime_ns, size) of the version read.
    key: FileKey
    #: Strong ETag: the quoted sha256 of ``data`` read from disk, or the one the loop gave its document.
    etag: str
    #: Parsed forms derived from ``data`` by routes, by name; filled once per version.
    derived: dict[str, Any] = field(default_factory=dict)
    #: The in-memory document this version came from (None: read from disk).
    source: PublicDocument | None = None


def _read_file(path: Path) -> tuple[bytes, FileKey]:
    """Read a whole file and the key of exactly the version read (fstat of the same descriptor)."""
    with open(path, "rb") as handle:
        data = handle.read()
        st = os.fstat(handle.fileno())
    return data, (st.st_ino, st.st_mtime_ns, st.st_size)


class FileCache:
    """The latest version of each published file in memory, re-read only when the file changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[Path, CachedFile] = {}
        #: The loop's documents whose bytes could not be had (a damaged spill range), by path, newest last: served
        #: from disk without reading them again nor warning again. Requests of several publications may be in
        #: flight at once (one still holds an older document), so each is remembered by identity, weakly (a
        #: publication nobody holds is forgotten with it), and at most FAILED_KEPT a path.
        self._failed: dict[Path, deque[weakref.ref[PublicDocument]]] = {}

    def get(self, path: Path) -> CachedFile | None:
        """The current version of ``path``, None when it does not exist (not published yet)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._files.get(path)
        if cached is not None and cached.key == key:
            return cached
        with self._lock:  # one reader loads a new version; concurrent requests wait for it
            cached = self._files.get(path)
            if cached is not None and cached.key == key:
                return cached
            try:
                data, read_key = _read_file(path)
            except FileNotFoundError:
                return None
            cached = CachedFile(data=data, key=read_key, etag='"' + hashlib.sha256(data).hexdigest() + '"')
            self._files[path] = cached
            return cached

    def published(self, path: Path, document: PublicDocument) -> CachedFile | None:
        """The version of ``path`` the loop published in memory: its bytes built once, its ETag as given.

        None when its bytes cannot be had (a spill range found damaged: the loop encodes those rows
        afresh at its next publication): one warning, and the document is remembered, so later
        requests for it go to the disk copy without reading the spill or warning again.
        """
        cached = self._files.get(path)
        if cached is not None and cached.source is document:
            return cached
        if self._has_failed(path, document):
            return None
        with self._lock:
            cached = self._files.get(path)
            if cached is not None and cached.source is document:
                return cached
            if self._has_failed(path, document):
                return None
            try:
                data = document.data()
            except SpillDamagedError as exc:
                self._failed.setdefault(path, deque(maxlen=FAILED_KEPT)).append(weakref.ref(document))
                logger.warning("serving %s from disk: %s", path.name, str(exc))  # the text: a kept record pins no frames
                return None
            cached = CachedFile(data=data, key=(-1, -1, len(data)), etag=document.etag, source=document)
            self._files[path] = cached
            return cached

    def _has_failed(self, path: Path, document: PublicDocument) -> bool:
        """Whether ``document``'s bytes could not be had (see ``_failed``); a copy of the deque: another thread may add."""
        return any(ref() is document for ref in tuple(self._failed.get(path, ())))

    def derive(self, cached: CachedFile, name: str, build: Callable[[bytes], Any]) -> Any:
        """``build(cached.data)``, computed once per file version and kept with it."""
        if name in cached.derived:
            return cached.derived[name]
        with self._lock:
            if name not in cached.derived:
                cached.derived[name] = build(cached.data)
            return cached.derived[name]


def get_file_cache(request: Request) -> FileCache:
    """The FileCache of the app serving ``request``."""
    cache: FileCache = request.registry.settings[_CACHE_SETTING]
    return cache


# ---------------------------------------------------------------------------------------------
# HTTP helpers


def accepts_gzip(header: str | None) -> bool:
    """True when an Accept-Encoding header allows gzip (``gzip``/``x-gzip`` or ``*`` with q > 0)."""
    if not header:
        return False
    explicit: float | None = None
    star: float | None = None
    for part in header.split(","):
        pieces = part.strip().split(";")
        coding = pieces[0].strip().lower()
        q = 1.0
        for parameter in pieces[1:]:
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            explicit = q if explicit is None else max(explicit, q)
        elif coding == "*":
            star = q
    if explicit is not None:
        return explicit > 0
    return star is not None and star > 0


def _etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match: ``*`` or any listed tag equal to ``etag`` (weak comparison)."""
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def _serve(request: Request, cached: CachedFile, content_type: str, *, gzip: bool = False) -> Response:
    """200 with the cached bytes, or 304 when the client already has this version."""
    headers = {
        "ETag": cached.etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if _etag_matches(request.headers.get("If-None-Match"), cached.etag):
        response = Response(status=304)
        response.content_type = None  # a 304 has no body to describe
        for name, value in headers.items():
            response.headers[name] = value
        return response
    response = Response()
    file_wrapper = request.environ.get("wsgi.file_wrapper")
    if file_wrapper is not None and len(cached.data) >= _STREAM_THRESHOLD:
        # Handed to the server as a file: waitress then sends straight from these bytes instead
        # of copying a large body into its own output buffer (which spills to a temp file).
        response.app_iter = file_wrapper(io.BytesIO(cached.data), _STREAM_BLOCK)
    else:
        response.body = cached.data
    response.content_length = len(cached.data)
    response.headers["Content-Type"] = content_type
    if gzip:
        response.headers["Content-Encoding"] = "gzip"
    for name, value in headers.items():
        response.headers[name] = value
    return response


def _current(request: Request, path: Path) -> CachedFile | None:
    """The current version of a public file: the loop's in-memory one, else the file on disk; None: none yet."""
    cache = get_file_cache(request)
    document = get_runstate(request).public.get(path.name)
    if document is not None:
        cached = cache.published(path, document)
        if cached is not None:
            return cached
    return cache.get(path)


def _files_or_404(request: Request) -> RunFiles | Response:
    """The run's files, or the 404 for an executor without a state directory."""
    files = get_options(request).files
    if files is None:
        return json_error(404, "nothing published: this executor has no state directory")
    return files


def _not_published(what: str) -> Response:
    return json_error(404, f"no {what} yet: the loop has not published the state")


# ---------------------------------------------------------------------------------------------
# Views


def state(request: Request) -> Response:
    """The published state JSON, gzip-encoded when the client accepts it."""
    files = _files_or_404(request)
    if isinstance(files, Response):
        return files
    gzip = accepts_gzip(request.headers.get("Accept-Encoding"))
    cached = _current(request, files.state_snapshot_gz) if gzip else None
    if cached is None:
        gzip = False
        cached = _current(request, files.state_snapshot)
    if cached is None:
        return _not_published("state")
    response = _serve(request, cached, "application/json", gzip=gzip)
    response.headers["Vary"] = "Accept-Encoding"
    return response


def _index_positions(data: bytes) -> dict[str, list[Any]]:
    """positions.json parsed and split by status (plus ``all``), each list sorted by id."""
    rows = orjson.loads(data)
    index: dict[str, list[Any]] = {status: [] for status in POSITION_STATUSES}
    for row in rows:
        index["all"].append(row)
        status = row.get("status")
        if status in index and status != "all":
            index[status].append(row)
    return index


def positions(request: Request) -> Response:
    """One page of positions: ``?status=open|closed|failed|all&offset=&limit=``."""
    files = _files_or_404(request)
    if isinstance(files, Response):
        return files
    try:
        status = choice_param(request, "status", POSITION_STATUSES, "all")
        offset = int_param(request, "offset", default=0, minimum=0)
        limit = int_param(request, "limit", default=DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
    except BadParameter as exc:
        return exc.response()
    cache = get_file_cache(request)
    cached = _current(request, files.positions)
    if cached is None:
        return _not_published("positions")
    index: dict[str, list[Any]] = cache.derive(cached, "positions", _index_positions)
    chosen = index[status or "all"]
    page = chosen[offset : offset + limit]
    return json_response(
        {"status": status, "total": len(chosen), "offset": offset, "limit": limit, "positions": page},
        headers={"ETag": cached.etag},
    )


def orders_csv(request: Request) -> Response:
    """Every order of the run as CSV (the backtest trades CSV's columns)."""
    files = _files_or_404(request)
    if isinstance(files, Response):
        return files
    cached = _current(request, files.orders_csv)
    if cached is None:
        return _not_published("orders")
    response = _serve(request, cached, "text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = 'inline; filename="orders.csv"'
    return response


def metadata(request: Request) -> Response:
    """The run's metadata.json as published."""
    files = _files_or_404(request)
    if isinstance(files, Response):
        return files
    cached = _current(request, files.metadata)
    if cached is None:
        return _not_published("metadata")
    return _serve(request, cached, "application/json")


def includeme(config: Configurator) -> None:
    """Give the app its file cache and register /state, /positions, /orders.csv and /metadata."""
    config.registry.settings[_CACHE_SETTING] = FileCache()
    add_json_route(config, "state", "/state", state)
    add_json_route(config, "positions", "/positions", positions)
    add_json_route(config, "orders_csv", "/orders.csv", orders_csv)
    add_json_route(config, "metadata", "/metadata", metadata)
