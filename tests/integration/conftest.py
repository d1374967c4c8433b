"""The integration tier: a real Celery worker process working on the test database.

`worker_process` starts `python -m celery -A hub worker -Q psa,default` once for this package
(stopped after its last test, before the test database is dropped); tests/worker.py holds the
machinery, shared with the browser tier. The worker uses the test database, the same data
folder and the same broker as the test process, and reaches the three HTTP fake PSAs
(`fake_psas`, started before it): PSA_ALLOW_PRIVATE_HOSTS, CONNECTWISE_CLIENT_ID and
AUTOTASK_ZONE_DISCOVERY_URL in its environment point it at them. Tests that use it need
committed rows: `transactional_db` or `live_server`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.worker import Worker, running_worker, worker_database_url  # noqa: F401 - kept importable here


@pytest.fixture(scope="package")
def worker_process(django_db_setup, tmp_path_factory, fake_psas) -> Iterator[Worker]:
    with running_worker(tmp_path_factory, fake_psas.worker_env()) as worker:
        yield worker
