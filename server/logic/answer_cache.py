"""A bounded cache of encoded answers, each valid while its organization's data is unchanged.

Dashboards ask AggregateUsage the same question again and again, and an answer is costly to
compute and to encode (a 30-day hourly chart by metric is 6,480 points, ~150 KB). The cache keeps
the encoded answer of a request under (organization, request) together with the organization's
data version (storage's `data_version`: a counter that every transaction changing the
organization's events increments in that transaction).

Why a kept answer is never stale: the version V is read BEFORE the answer is computed, so the
answer reflects at least every change up to V (each statement sees all that committed before it
started). It is served only to a later request that reads the version as V again, that is, when no
change committed since V was read; so nothing the answer could have missed exists. (If a change
committed between reading V and computing, the answer may include it, but then the version is
already past V and the answer is never served.)

Only answers that do not depend on the clock are kept (AggregateUsage with an explicit `until`).
Least recently used answers are evicted past `max_bytes`; one answer larger than an eighth of it is
not kept. Thread-safe; per process (each replica keeps its own).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Hashable


class AnswerCache:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[Hashable, tuple[int, bytes]] = collections.OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, version: int) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, version: int, data: bytes) -> None:
        if len(data) > self._max_bytes // 8:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._entries[key] = (version, data)
            self._bytes += len(data)
            while self._bytes > self._max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= len(evicted)

    @property
    def size_bytes(self) -> int:
        return self._bytes
