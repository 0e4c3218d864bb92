"""The public files of the latest publication, held in memory for the webhook.

A running executor's loop builds its public files (state.json and its gzip, orders.csv,
positions.json, metadata.json) once per change and puts them here; web threads take the current
version of one by name. A document gives its ETag at once and its bytes on demand (joined or
compressed once, by the first reader), so a publication the size of the whole history costs the
loop only what changed. The files on disk under ``public/`` are written from the same documents,
at a bounded cadence and at the end of a run.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

__all__ = ["PublicDocument", "PublicDocuments"]


class PublicDocument(Protocol):
    """One version of one public file (``store.publish.PublicFile`` is one).

    It must allow weak references (no ``__slots__`` without ``__weakref__``): the webhook remembers a
    document whose bytes could not be had by a weak reference, so that it is forgotten with its publication.
    """

    @property
    def etag(self) -> str:
        """Its strong ETag, quoted; a different version always has a different one."""

    def data(self) -> bytes:
        """Its bytes (built on the first call, then the same object)."""


class PublicDocuments:
    """The latest publication's documents by file name; replaced whole, read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[str, PublicDocument] = {}

    def replace(self, documents: Mapping[str, PublicDocument]) -> None:
        """Make ``documents`` the current publication (all its files at once)."""
        with self._lock:
            self._documents = dict(documents)

    def get(self, name: str) -> PublicDocument | None:
        """The current version of the file ``name`` (``state.json``, ...), None before the first publication."""
        with self._lock:
            return self._documents.get(name)
