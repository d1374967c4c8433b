"""Settings of the integration tier's Celery worker process: the hub's own, plus a Redis key
prefix of the test run, so that test runs sharing one Redis never take each other's tasks, and
a marker file for each running task (tests/worker.py waits for none before a database flush).

Started with DJANGO_SETTINGS_MODULE=tests.integration.worker_settings by conftest.py, which
gives the test process the same prefix at run time.
"""

import os
from pathlib import Path

from celery.signals import task_postrun, task_prerun

from hub.settings import *  # noqa: F403
from hub.settings import CELERY_BROKER_TRANSPORT_OPTIONS, REDIS_URL

_PREFIX = os.environ.get("HUB_TEST_BROKER_PREFIX", "")
if REDIS_URL and _PREFIX:
    CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": _PREFIX}
elif not REDIS_URL:
    # kombu's filesystem transport polls its folder once a second by default; a test worker
    # polls faster, so each hop of a flow (verify, then refresh, ...) does not add a second.
    CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "polling_interval": 0.1}

_BUSY_DIR = os.environ.get("HUB_TEST_BUSY_DIR")


def _marker(task_id: str) -> Path:
    return Path(_BUSY_DIR, f"{os.getpid()}-{task_id}")


if _BUSY_DIR:
    # task_postrun is sent whatever the outcome (success, failure, retry).
    task_prerun.connect(lambda task_id, **kwargs: _marker(task_id).touch(), weak=False)
    task_postrun.connect(lambda task_id, **kwargs: _marker(task_id).unlink(missing_ok=True), weak=False)
