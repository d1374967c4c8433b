"""The integration tier: a real Celery worker process working on the test database.

`worker_session` starts `python -m celery -A hub worker -Q psa,default` once for this package
(stopped after its last test, before the test database is dropped); `worker_process` lends it to
a test and settles it (nothing queued, nothing running) before the test's database flush.
tests/worker.py holds the machinery, shared with the browser tier. The worker uses the test database, the same data
folder and the same broker as the test process, and reaches the three HTTP fake PSAs
(`fake_psas`, started before it): PSA_ALLOW_PRIVATE_HOSTS, CONNECTWISE_CLIENT_ID and
AUTOTASK_ZONE_DISCOVERY_URL in its environment point it at them. Tests that use it need
committed rows: `transactional_db` or `live_server`.
"""

from __future__ import annotations

import pytest

from tests.factories import make_api_key
from tests.flows import Hub
from tests.worker import worker_process, worker_session  # noqa: F401 - the tier's fixtures


@pytest.fixture
def hub(live_server, personas, worker_process):  # noqa: F811 - the fixture imported above
    """Account A's host product, with an API key, over the live server."""
    _, key = make_api_key(personas.account_a)
    hub = Hub(live_server.url, key, worker_process)
    yield hub
    # A kept-alive connection keeps a live-server thread, and its database session, open.
    hub.session.close()
