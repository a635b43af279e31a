"""Wake-ups for live pages: a worker says "this job changed", and the streams watching it look again.

The database stays the truth: a wake-up carries no data, only the news that there is something new
to read. With Redis (REDIS_URL) a change is a PUBLISH on the job's channel and a stream waits on its
SUBSCRIBE, so it reads as soon as the row is committed; without Redis (the embedded defaults)
`publish` does nothing and a stream looks at the database every POLL_SECONDS.

Publishing never gets in the way of the work: it happens once the transaction that wrote the change
commits, it gives up quickly, and after a failure it stays quiet for a while (streams still look at
the database at least every keep-alive, so a lost wake-up delays a page, it never loses anything).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import redis
import redis.asyncio
from django.conf import settings
from django.db import models, transaction

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # without Redis: how often a stream looks at the database
PUBLISH_TIMEOUT_SECONDS = 0.5  # a Redis that answers slower than this is treated as down
QUIET_AFTER_FAILURE_SECONDS = 10.0  # after a failed publish, skip publishing this long (the work goes on)

_client: redis.Redis | None = None
_quiet_until = 0.0


def channel_for(model: type[models.Model], pk: int) -> str:
    """One channel per object; the queue prefix keeps toolkits (and test runs) sharing a Redis apart."""
    return f"{settings.QUEUE_PREFIX}changed:{model._meta.label_lower}:{pk}"


def publish(channel: str) -> None:
    """Wake whoever watches `channel`, once the current transaction (if any) commits."""
    if settings.REDIS_URL:
        transaction.on_commit(lambda: send(channel))


def send(channel: str) -> None:
    global _client, _quiet_until
    if time.monotonic() < _quiet_until:
        return
    try:
        if _client is None:
            _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=PUBLISH_TIMEOUT_SECONDS,
                                           socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS)
        _client.publish(channel, b"")
    except (redis.RedisError, OSError) as exc:
        _quiet_until = time.monotonic() + QUIET_AFTER_FAILURE_SECONDS
        log.warning("could not wake the live pages (%s: %s); they catch up by reading the database", type(exc).__name__, exc)


class Poller:
    """Without Redis: every wait is a short sleep, after which the stream reads the database again."""

    async def wait(self, timeout: float) -> bool:
        await asyncio.sleep(min(timeout, POLL_SECONDS))
        return True


class Subscription:
    """With Redis: a wait ends at the first message on the channel (others already there are taken
    with it), or after `timeout`. If Redis goes away, the stream goes on by polling."""

    def __init__(self, pubsub: redis.asyncio.client.PubSub):
        self.pubsub = pubsub
        self.fallback: Poller | None = None

    async def wait(self, timeout: float) -> bool:
        if self.fallback:
            return await self.fallback.wait(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while (left := deadline - loop.time()) > 0:
                if await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left):
                    while await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                        pass  # several changes at once: one look at the database covers them all
                    return True
        except (redis.RedisError, OSError) as exc:
            log.warning("lost the Redis subscription (%s); this stream polls the database from now on", type(exc).__name__)
            self.fallback = Poller()
            return True
        return False


@contextlib.asynccontextmanager
async def listen(channel: str) -> AsyncIterator[Poller | Subscription]:
    """Subscribe before reading, so that nothing committed after the read goes unnoticed. The
    subscription and its connection end with the block, however it ends (a client gone included)."""
    if not settings.REDIS_URL:
        yield Poller()
        return
    client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS)
    pubsub = client.pubsub()
    try:
        waiter: Poller | Subscription = Subscription(pubsub)
        try:
            await pubsub.subscribe(channel)
        except (redis.RedisError, OSError) as exc:
            log.warning("could not subscribe to %s (%s); this stream polls the database", channel, type(exc).__name__)
            waiter = Poller()
        yield waiter
    finally:
        await pubsub.aclose()
        await client.aclose()
