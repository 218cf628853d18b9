"""A throwaway database per benchmark run, so a benchmark never touches the user's library."""

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def throwaway_database(label: str) -> Iterator[None]:
    """A fresh, migrated database for the block (on the configured server), dropped afterwards."""
    from django.conf import settings
    from django.test.utils import setup_databases, teardown_databases

    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"bench_{label}_{os.getpid()}"
    databases = setup_databases(verbosity=0, interactive=False)
    try:
        yield
    finally:
        teardown_databases(databases, verbosity=0)
