"""The slot semaphore across OS processes, as Celery's prefork workers share it.

Nothing Django is imported at module level: spawned children import this module before they set up Django.
"""

import multiprocessing
import os
import threading
import time

import pytest

CAP = 2
URL = "http://127.0.0.1:9/v1"  # only its advisory-lock key matters here


def contend(database_url: str, held, peak, shared, rounds: int = 8) -> None:
    """A worker-like process on the test database: two threads, each taking a slot `rounds` times.

    Across processes, `held[slot]` counts each slot's holders, `peak` the most held at once and
    `shared` whether a slot ever had two holders.
    """
    os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.db import connections

    from tagsite.ai.slots import endpoint_slot

    def work() -> None:
        try:
            for _ in range(rounds):
                with endpoint_slot(URL, CAP) as slot:
                    with held.get_lock():
                        held[slot] += 1
                        peak.value = max(peak.value, sum(held))
                        shared.value |= held[slot] > 1
                    time.sleep(0.03)
                    with held.get_lock():
                        held[slot] -= 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.django_db
def test_slots_cap_holders_across_processes():
    from tests.conftest import database_url

    spawn = multiprocessing.get_context("spawn")
    held, peak, shared = spawn.Array("i", CAP), spawn.Value("i", 0), spawn.Value("b", False)
    processes = [spawn.Process(target=contend, args=(database_url(), held, peak, shared)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0]
    assert peak.value == CAP and not shared.value  # filled, never exceeded
