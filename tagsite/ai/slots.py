"""A cross-process cap on requests in flight per LLM server: PostgreSQL advisory locks as a semaphore.

Every Celery worker (and every command) shares the database, so the cap holds across machines
without a broker-specific lock; a session lock dies with its connection, so a killed worker
never leaks a slot.
"""

import random
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

from tagsite.ai.base import LLMUnavailable


def slot_key(base_url: str) -> int:
    """The first advisory-lock key of a server (the second is the slot number), as a signed int4."""
    value = zlib.crc32(base_url.rstrip("/").encode())
    return value - 2**32 if value >= 2**31 else value


def _try_lock(cursor, key: int, slots: int) -> int | None:
    for slot in random.sample(range(slots), slots):
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [key, slot])
        if cursor.fetchone()[0]:
            return slot
    return None


@contextmanager
def endpoint_slot(base_url: str, slots: int, wait: float = 300.0, using: str = "default") -> Iterator[int]:
    """Hold one of the server's `slots` for the duration of the block; yields the slot number.

    Advisory locks are reentrant within a database session, so do not nest two slots of one server
    in one thread: the inner one could get the slot the outer one already holds.
    """
    key = slot_key(base_url)
    deadline = time.monotonic() + wait
    with connections[using].cursor() as cursor:
        while (slot := _try_lock(cursor, key, slots)) is None:
            if time.monotonic() > deadline:
                raise LLMUnavailable(f"no free request slot on {base_url} within {wait:.0f}s ({slots} slots)")
            time.sleep(random.uniform(0.005, 0.02))
        try:
            yield slot
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [key, slot])
