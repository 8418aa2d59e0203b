"""How many messages wait in the broker's queues, read when `/metrics` is scraped: Redis's
`LLEN` of each queue (within `TIMEOUT` seconds), the embedded broker's files in its queue
folder by queue. AMQP's depth is the broker's own to tell (RabbitMQ's Prometheus plugin):
none is read here."""

from __future__ import annotations

import os
from collections.abc import Callable

from procexec.engine.settings import Settings
from procexec.workers.celery_app import QUEUE, broker_options

#: seconds a read of the broker may take
TIMEOUT = 0.5
#: the depth of each queue by name
QueueDepth = Callable[[], dict[str, int]]


def _queues(settings: Settings) -> list[str]:
    return [QUEUE, *([settings.loader_queue] if settings.loader_queue else [])]


def queue_depth(settings: Settings) -> QueueDepth | None:
    """A reader of the queues' depth for these settings' broker; None where none is read."""
    url, options = broker_options(settings)
    queues = _queues(settings)
    if settings.broker_url is None:
        folder = str(options["data_folder_in"])

        def files() -> dict[str, int]:
            depth = dict.fromkeys(queues, 0)
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not entry.name.startswith(".") and entry.name.endswith(".msg"):
                        queue = entry.name.partition(".")[2][: -len(".msg")]
                        depth[queue] = depth.get(queue, 0) + 1
            return depth

        return files
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)

        def lengths() -> dict[str, int]:
            return {queue: int(client.llen(queue)) for queue in queues}

        return lengths
    return None
