"""A per-host budget for every worker of a scale-out crawl together: leases counted in Redis.

Each request to a host holds a lease while it is on the wire: a member of the sorted set
``<XKCDCRAWL_FLEET_KEY>:<host>:leases`` scored by its expiry (Redis time, in ms). A lease is taken
by the per-host gate (xkcdcrawl.politeness) as the request's last step before Scrapy's downloader, and
given back the moment the downloader returns, so the leases are the requests the server sees, no more. One Lua script
drops expired leases and takes a lease only while fewer than CONCURRENT_REQUESTS_PER_DOMAIN are held,
the host is not paused (Retry-After) and its DOWNLOAD_DELAY has passed since the fleet's last request
there. Leases of long transfers are renewed; a dead worker's leases expire after XKCDCRAWL_FLEET_LEASE
seconds. All crawls on one Redis share each host's budget (hosts are keyed by name, not by crawl).
On only with scrapy-redis's scheduler (README, "Scaling out with scrapy-redis").
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
from typing import TYPE_CHECKING, Any, Self

from scrapy.utils.asyncio import create_looping_call

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)"

# KEYS: leases, not-before. ARGV: lease, limit, lease ms, delay ms.
# Returns 0 (taken), or how many ms to wait (pause or delay), or -1 (the budget is spent).
ACQUIRE = f"""{_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local not_before = tonumber(redis.call('GET', KEYS[2]) or '0')
if now < not_before then return not_before - now end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
local delay = tonumber(ARGV[4])
if delay > 0 then redis.call('SET', KEYS[2], now + delay, 'PX', delay) end
return 0
"""

# KEYS: not-before. ARGV: pause ms. Nothing to the host before now + pause, or a later pause.
PAUSE = f"""{_NOW}
local resume = now + tonumber(ARGV[1])
if resume > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], resume, 'PX', tonumber(ARGV[1]))
end
return 0
"""

# KEYS: leases. ARGV: lease ms, the leases to renew (those still held: XX).
RENEW = f"""{_NOW}
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 0
"""


def scale_out(crawler: Crawler) -> bool:
    return str(crawler.settings.get("SCHEDULER") or "").startswith("scrapy_redis.")


class FleetBudget:
    """Leases per host, in Redis, for the requests this worker has on the wire."""

    def __init__(self, server: Any, prefix: str, lease: float, poll: float) -> None:
        self.server = server
        self.prefix = prefix
        self.lease_ms = int(lease * 1000)
        self.poll = poll
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._numbers = itertools.count()
        self.held: dict[Request, tuple[str, str]] = {}
        self._acquire = server.register_script(ACQUIRE)
        self._pause = server.register_script(PAUSE)
        self._renew = server.register_script(RENEW)
        self._ticker: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self | None:
        """The fleet's budget with scrapy-redis's scheduler on, else None (nothing needs Redis)."""
        settings = crawler.settings
        if not scale_out(crawler) or not settings.getbool("XKCDCRAWL_FLEET_BUDGET"):
            return None
        from scrapy_redis.connection import get_redis_from_settings  # type: ignore[import-untyped]

        return cls(
            get_redis_from_settings(settings),
            settings.get("XKCDCRAWL_FLEET_KEY"),
            settings.getfloat("XKCDCRAWL_FLEET_LEASE"),
            settings.getfloat("XKCDCRAWL_FLEET_POLL"),
        )

    def keys(self, host: str) -> list[str]:
        return [f"{self.prefix}:{host}:leases", f"{self.prefix}:{host}:not_before"]

    def acquire(self, request: Request, host: str, limit: int, delay: float) -> float:
        """Take a lease for request: 0.0, or the seconds to wait before asking again."""
        lease = f"{self.worker}:{next(self._numbers)}"
        wait = int(self._acquire(keys=self.keys(host), args=[lease, limit, self.lease_ms, int(delay * 1000)]))
        if wait == 0:
            self.held[request] = (host, lease)
            self._start_renewing()
            return 0.0
        return self.poll if wait < 0 else wait / 1000

    def release(self, request: Request) -> None:
        if held := self.held.pop(request, None):
            host, lease = held
            self.server.zrem(self.keys(host)[0], lease)

    def pause(self, host: str, seconds: float) -> None:
        """Nothing goes to host from any worker for that long (a Retry-After)."""
        self._pause(keys=self.keys(host)[1:], args=[int(seconds * 1000)])

    def renew(self) -> None:
        by_host: dict[str, list[str]] = {}
        for host, lease in self.held.values():
            by_host.setdefault(host, []).append(lease)
        for host, leases in by_host.items():
            self._renew(keys=self.keys(host)[:1], args=[self.lease_ms, *leases])

    def close(self) -> None:
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        for request in list(self.held):
            self.release(request)

    def _start_renewing(self) -> None:
        # Started on the first lease, when the reactor runs; a third of the lease leaves room for a slow Redis.
        if self._ticker is None:
            self._ticker = create_looping_call(self.renew)
            self._ticker.start(self.lease_ms / 3000, now=False)
