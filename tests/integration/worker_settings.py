"""Settings of the integration tier's Celery worker process: the hub's own, plus a Redis key
prefix of the test run, so that test runs sharing one Redis never take each other's tasks.

Started with DJANGO_SETTINGS_MODULE=tests.integration.worker_settings by conftest.py, which
gives the test process the same prefix at run time.
"""

import os

from hub.settings import *  # noqa: F403
from hub.settings import CELERY_BROKER_TRANSPORT_OPTIONS, REDIS_URL

_PREFIX = os.environ.get("HUB_TEST_BROKER_PREFIX", "")
if REDIS_URL and _PREFIX:
    CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": _PREFIX}
elif not REDIS_URL:
    # kombu's filesystem transport polls its folder once a second by default; a test worker
    # polls faster, so each hop of a flow (verify, then refresh, ...) does not add a second.
    CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "polling_interval": 0.1}
