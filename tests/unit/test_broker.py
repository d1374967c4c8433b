"""The embedded broker (hub/broker.py): a message is written whole before a worker can see it."""

from __future__ import annotations

import os

from kombu import Connection

from hub import broker
from hub.celery import app


def test_the_embedded_default_uses_the_whole_message_transport(settings):
    assert app.conf.broker_url.startswith("hubfs://") or settings.REDIS_URL
    assert Connection("hubfs://").transport_cls == "hubfs"
    assert isinstance(Connection("hubfs://", transport_options={"data_folder_in": "/tmp", "data_folder_out": "/tmp"})
                      .transport, broker.Transport)


def test_a_message_appears_under_its_queue_name_only_once_written(tmp_path, monkeypatch):
    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    options = {"data_folder_in": str(folders["queue"]), "data_folder_out": str(folders["queue"]),
               "processed_folder": str(folders["processed"]), "control_folder": str(folders["control"]),
               "store_processed": False}
    listed_while_writing = []
    real_replace = os.replace

    def replace(source, target):
        listed_while_writing.extend(os.listdir(folders["queue"]))
        real_replace(source, target)

    monkeypatch.setattr(broker.os, "replace", replace)
    with Connection("hubfs://", transport_options=options) as conn:
        channel = conn.default_channel
        assert isinstance(channel, broker.Channel)
        channel._put("psa", {"incident": 42})
        [partial] = listed_while_writing
        assert partial.startswith(".partial-") and not partial.endswith(".msg")  # no worker takes it
        assert channel._get("psa") == {"incident": 42}
