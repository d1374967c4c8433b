"""The embedded broker: kombu's filesystem transport, with each message written whole before it
appears in the queue folder.

kombu writes a message straight into its final file name, so a worker listing the folder can
take the file while it is still empty and die on the JSON decode ("Unrecoverable error:
JSONDecodeError", seen in the integration tier). Here the message is written under a name no
queue reads (a leading dot) and renamed into place, which is atomic on one filesystem.
Registered as the "hubfs" transport (CELERY_BROKER_URL "hubfs://" in hub/settings.py).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # kombu's own name: milliseconds first, so the folder sorts in arrival order.
        final = os.path.join(self.data_folder_out, f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg")
        partial = os.path.join(self.data_folder_out, f".partial-{uuid.uuid4().hex}")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault("hubfs", "hub.broker:Transport")
