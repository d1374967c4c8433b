from __future__ import annotations

import pytest

from integrations.connectwise.provider import ConnectWiseProvider
from tests.unit.connectwise.support import CONFIG, SECRETS, Recorder


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def provider(recorder) -> ConnectWiseProvider:
    return ConnectWiseProvider(dict(CONFIG), dict(SECRETS), recorder.transport())
