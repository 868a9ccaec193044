"""Nothing lost when a worker dies: scrapy-redis's priority queue with a reliable pop.

A worker's pop moves the request from the shared queue to its own processing hash
(``<queue>:processing:<worker>``, one Lua script), and the request is acknowledged (removed from
there) only once its callback's output has been handled, the files of its items included
(``xkcdcrawl.acknowledge.Acknowledge``, a spider middleware). Each worker keeps ``<queue>:alive:<worker>`` alive with a
heartbeat; when it is gone (the worker was killed, or its node lost), any other worker puts that
worker's unacknowledged requests back into the queue. An idle worker stays open while another
worker still holds requests, since they may add work or come back to the queue.

A request whose download failed for good is not acknowledged (its errback's output does not go
through spider middlewares): a worker that finishes drops its leftovers, a worker that dies hands
them to the others, which try them once more. Retried or redirected requests go back through the
queue and give up their old entry on the way.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import DontCloseSpider
from scrapy.utils.asyncio import create_looping_call
from scrapy_redis.dupefilter import RFPDupeFilter  # type: ignore[import-untyped]
from scrapy_redis.queue import PriorityQueue  # type: ignore[import-untyped]

from xkcdcrawl.acknowledge import TAKEN, acknowledge, scores_key

if TYPE_CHECKING:
    from scrapy import Request, Spider

logger = logging.getLogger(__name__)

# KEYS: queue, processing, scores, workers, alive. ARGV: worker, entry id, alive ms.
POP = """
local top = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #top == 0 then return false end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, 0)
redis.call('HSET', KEYS[2], ARGV[2], top[1])
redis.call('HSET', KEYS[3], ARGV[2], top[2])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SET', KEYS[5], 1, 'PX', tonumber(ARGV[3]))
return top[1]
"""

# KEYS: queue, dupefilter. ARGV: fingerprint, score, request.
# Seen and queued in one step: a worker killed between the two would leave a request seen by the
# fleet and in nobody's queue, lost.
PUSH_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

# request.meta key: (dupefilter key, fingerprint) of a request ReliableDupeFilter found unseen.
UNSEEN = "xkcdcrawl_unseen"

# KEYS: workers. ARGV: queue key, this worker.
# Requeues the entries of workers that are not alive; returns {requeued, held by live others}.
RECOVER = """
local moved, busy = 0, 0
for _, w in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local p, s = ARGV[1] .. ':processing:' .. w, ARGV[1] .. ':processing-scores:' .. w
  if redis.call('EXISTS', ARGV[1] .. ':alive:' .. w) == 0 then
    local entries = redis.call('HGETALL', p)
    for i = 1, #entries, 2 do
      redis.call('ZADD', ARGV[1], redis.call('HGET', s, entries[i]) or 0, entries[i + 1])
      moved = moved + 1
    end
    redis.call('DEL', p, s)
    redis.call('SREM', KEYS[1], w)
  elseif w ~= ARGV[2] then
    busy = busy + redis.call('HLEN', p)
  end
end
return {moved, busy}
"""


# scrapy-redis has no type hints, hence the type: ignore.
class ReliableDupeFilter(RFPDupeFilter):  # type: ignore[misc]
    """scrapy-redis's shared set of requests seen, whose request is added to it with its push.

    request_seen() only looks; ReliableQueue.push() adds the fingerprint and queues the request
    in one Lua script, so that what the fleet has seen is always in a queue (or done).
    """

    def request_seen(self, request: Request) -> bool:
        fingerprint = self.request_fingerprint(request)
        if self.server.sismember(self.key, fingerprint):
            return True
        request.meta[UNSEEN] = (self.key, fingerprint)
        return False


# scrapy-redis has no type hints, hence the type: ignore.
class ReliableQueue(PriorityQueue):  # type: ignore[misc]
    """scrapy-redis's PriorityQueue whose pop keeps the request until it is acknowledged."""

    def __init__(self, server: Any, spider: Spider, key: str, serializer: Any = None) -> None:
        super().__init__(server, spider, key, serializer)
        settings = spider.crawler.settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.processing = f"{self.key}:processing:{self.worker}"
        self.workers = f"{self.key}:workers"
        self.alive = f"{self.key}:alive:{self.worker}"
        self.alive_ms = int(settings.getfloat("XKCDCRAWL_WORKER_TTL") * 1000)
        self._numbers = itertools.count()
        self._pop = server.register_script(POP)
        self._push_once = server.register_script(PUSH_ONCE)
        if settings.get("DUPEFILTER_CLASS") != f"{__name__}.ReliableDupeFilter":
            logger.warning(
                "DUPEFILTER_CLASS is not %s.ReliableDupeFilter: a worker killed while it queues a request"
                " may lose it (seen by the fleet, in no queue)",
                __name__,
            )
        self._recover = server.register_script(RECOVER)
        self.heartbeat()
        self._ticker = create_looping_call(self.heartbeat)
        self._ticker.start(self.alive_ms / 4000, now=False)
        spider.crawler.signals.connect(self.spider_idle, signal=signals.spider_idle)
        spider.crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)
        self.recover()

    def heartbeat(self) -> None:
        self.server.set(self.alive, 1, px=self.alive_ms)

    def push(self, request: Request) -> None:
        taken = request.meta.pop(TAKEN, None)
        if (unseen := request.meta.pop(UNSEEN, None)) is not None:
            dupefilter, fingerprint = unseen
            data = self._encode_request(request)
            self._push_once(keys=[self.key, dupefilter], args=[fingerprint, -request.priority, data])
        else:
            super().push(request)
        if taken is not None:
            acknowledge(self.server, taken)

    def pop(self, timeout: int = 0) -> Request | None:
        entry = f"{next(self._numbers)}"
        keys = [self.key, self.processing, scores_key(self.processing), self.workers, self.alive]
        data = self._pop(keys=keys, args=[self.worker, entry, self.alive_ms])
        if data is None:
            return None
        request: Request = self._decode_request(data)
        request.meta[TAKEN] = (self.processing, entry)
        return request

    def recover(self) -> int:
        """Put dead workers' requests back into the queue; how many requests live others still hold."""
        moved, busy = self._recover(keys=[self.workers], args=[self.key, self.worker])
        if moved:
            logger.warning("Put %d requests of dead workers back into the queue %s", moved, self.key)
        return int(moved) + int(busy)

    def spider_idle(self) -> None:
        if self.recover():
            raise DontCloseSpider

    def spider_closed(self, reason: str) -> None:
        if self._ticker.running:
            self._ticker.stop()
        if reason != "finished":
            # Shut down before the end (SIGTERM, a limit): what it held goes back to the others.
            self.server.delete(self.alive)
            self.recover()
            return
        self.server.pipeline().delete(self.processing, scores_key(self.processing), self.alive).srem(
            self.workers, self.worker
        ).execute()
