"""Settings of xkcdcrawl: polite to public sites, safe on disk. Override any with -s NAME=VALUE."""

from scrapy.settings.default_settings import DOWNLOADER_MIDDLEWARES_BASE as _SCRAPY_DOWNLOADER_MIDDLEWARES
from scrapy.settings.default_settings import EXTENSIONS_BASE as _SCRAPY_EXTENSIONS

BOT_NAME = "xkcdcrawl"
SPIDER_MODULES = ["xkcdcrawl.spiders"]
NEWSPIDER_MODULE = "xkcdcrawl.spiders"
# A crawl imports its own spider's module only.
SPIDER_LOADER_CLASS = "xkcdcrawl.spiderloader.SpiderLoader"
COMMANDS_MODULE = "xkcdcrawl.commands"

# Who we are, and how hard we knock: per host, never more than this many requests at once.
USER_AGENT = "xkcdcrawl/0.1 (bulk file downloader built on Scrapy)"
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 32
CONCURRENT_REQUESTS_PER_DOMAIN = 8
# Items of one page in the pipeline at once (Scrapy: 100). Each waits for a download slot
# anyway; fewer keep a mirror of many big listings in less memory and CPU.
CONCURRENT_ITEMS = 32
# Listing pages whose files are still being fetched, counted by the size of their bodies
# (Scrapy: 5 MB). A page keeps its parsed entries until its last file is done, several times
# its body: past this the engine reads no further page, so a mirror's memory does not grow
# with its folders. 200 KB is 3 nginx pages of 500 files, 1500 files ahead of the downloads;
# 20,000 files in 40 folders peaked at 103 MB with Scrapy's 5 MB, 87 MB with 500 KB, 84.5 MB with it
# (1.19x the 1000 files' 71 MB, which fit in it either way).
SCRAPER_SLOT_MAX_ACTIVE_SIZE = 200_000
DOWNLOAD_DELAY = 0
AUTOTHROTTLE_ENABLED = False
DOWNLOAD_TIMEOUT = 30
RETRY_ENABLED = True
RETRY_TIMES = 3
DOWNLOADER_MIDDLEWARES = {
    # The policy sources, raising xkcdcrawl.outcomes.Filtered: filtered, not failed.
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
    "xkcdcrawl.filters.Offsite": 50,
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "xkcdcrawl.filters.RobotsTxt": 100,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    # Retries that wait, pages and files.
    "xkcdcrawl.politeness.BackoffRetryMiddleware": 550,
    # -a dry_run=true: after robots.txt and offsite, a HEAD.
    "xkcdcrawl.dryrun.DryRunMiddleware": 950,
    # The per-host limit, Retry-After pauses and the fleet's budget: last, after every middleware that
    # may download a request of its own (the dry run's HEAD would otherwise wait for its own file's place).
    "xkcdcrawl.politeness.HostGate": 1000,
}
SPIDER_MIDDLEWARES = {
    # -a retry_failed=true: only the files the last run report lists as failed.
    "xkcdcrawl.extensions.report.RetryFailed": 5,
    # Scale-out: requests taken from the shared queue are acknowledged once their output is handled.
    "xkcdcrawl.acknowledge.Acknowledge": 10,
}
# Scrapy's cookie middleware in its place, imported with the first cookie (xkcdcrawl.cookies): its
# module costs ~35 ms of every start-up, and a None in DOWNLOADER_MIDDLEWARES would still import it.
DOWNLOADER_MIDDLEWARES_BASE = {
    ("xkcdcrawl.cookies.LazyCookies" if path.endswith(".CookiesMiddleware") else path): order
    for path, order in _SCRAPY_DOWNLOADER_MIDDLEWARES.items()
}
# A body shorter than its Content-Length is an error, and retried.
DOWNLOAD_FAIL_ON_DATALOSS = True

# File bodies are written to disk as they arrive (pages stay in memory): xkcdcrawl.handlers.
DOWNLOAD_HANDLERS = {
    "http": "xkcdcrawl.handlers.StreamingDownloadHandler",
    "https": "xkcdcrawl.handlers.StreamingDownloadHandler",
}

# Files: real names under FILES_STORE, written atomically, kept until deleted.
ITEM_PIPELINES = {"xkcdcrawl.pipelines.NamedFilesPipeline": 300}
FILES_STORE = "downloads"
# In days: a stored file is never fetched again because of its age.
FILES_EXPIRES = 365 * 100
MEDIA_ALLOW_REDIRECTS = True
# Scrapy's stats collector, without the toll on each of its private attribute reads.
STATS_CLASS = "xkcdcrawl.outcomes.Stats"
# Repeats of one URL (-a repeat=N) stay apart.
REQUEST_FINGERPRINTER_CLASS = "xkcdcrawl.fingerprint.DrawFingerprinter"

# Our own knobs.
# Record complete items in the download archive (FILES_STORE/.xkcdcrawl/archive-<spider>.jsonl),
# so that re-runs skip them.
XKCDCRAWL_ARCHIVE = True
# Exit status 1 when any file failed.
XKCDCRAWL_FAIL_ON_ERROR = True
# Seconds between progress reports; 0 turns them off.
XKCDCRAWL_PROGRESS_INTERVAL = 5.0
# Seconds before the first retry; the wait doubles with each retry.
XKCDCRAWL_RETRY_BACKOFF = 1.0
# The longest wait between two tries.
XKCDCRAWL_RETRY_BACKOFF_MAX = 60.0
# Ask the server whether each stored file changed (If-None-Match / If-Modified-Since, as wget -N),
# for sources whose listing shows no size or date (URL lists, albums, python -m http.server).
XKCDCRAWL_REVALIDATE = False
# Hosts (and their sub-domains) files may be fetched from, redirects included; empty: any host.
XKCDCRAWL_FILE_HOSTS: list[str] = []
# Bytes: a larger file fails; 0 means no limit (DOWNLOAD_MAXSIZE caps pages only).
XKCDCRAWL_FILES_MAXSIZE = 0
# Bytes: a file this big is fetched in parallel ranges, XKCDCRAWL_SPLIT_PARTS of them (1: never),
# each counted against CONCURRENT_REQUESTS_PER_DOMAIN.
XKCDCRAWL_SPLIT_SIZE = 64 * 1024 * 1024
XKCDCRAWL_SPLIT_PARTS = 4
# s3:// stores: the local folder for partial files; "" means ~/.cache/xkcdcrawl/s3/<bucket>/<prefix>.
XKCDCRAWL_WORK_DIR = ""
# The album spider's Imgur API client id, for Imgur albums.
IMGUR_CLIENT_ID = ""
# The tests point it at 127.0.0.1.
XKCDCRAWL_IMGUR_API_URL = "https://api.imgur.com"
# A longer Retry-After gives up instead of waiting.
XKCDCRAWL_RETRY_AFTER_MAX = 600.0

EXTENSIONS = {
    "xkcdcrawl.extensions.progress.Progress": 500,
    "xkcdcrawl.extensions.quiet.QuietNetworkErrors": 0,
    # One crawl per store.
    "xkcdcrawl.lock.StoreLockExtension": 0,
}
# The run report in FILES_STORE/.xkcdcrawl/reports/, and the end summary, takes the place of Scrapy's
# CoreStats, which it is and extends (xkcdcrawl.extensions.report.RunReport). The telnet console
# and the remote control are off below, and not even imported (Scrapy imports every listed
# extension, even one set to None): the remote-control module alone pulls in aiohttp, 1.7 s of
# every run's start-up here.
EXTENSIONS_BASE = {
    ("xkcdcrawl.extensions.report.RunReport" if path.endswith(".CoreStats") else path): order
    for path, order in _SCRAPY_EXTENSIONS.items()
    if path not in {"scrapy.extensions.remote_control.RemoteControl", "scrapy.extensions.telnet.TelnetConsole"}
}
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"

# Scaling out on scrapy-redis (README): read only when SCHEDULER is scrapy-redis's.
# A worker that finishes must not delete the frontier the others still use.
SCHEDULER_PERSIST = True
# xkcdcrawl.scaleout spiders: an idle worker stays open this long for more work.
MAX_IDLE_TIME_BEFORE_CLOSE = 10
# A dead worker's requests go back to the queue.
SCHEDULER_QUEUE_CLASS = "xkcdcrawl.redisqueue.ReliableQueue"
# Seconds without a heartbeat before a worker counts as dead and its requests go back.
XKCDCRAWL_WORKER_TTL = 10.0
# The per-host limit, DOWNLOAD_DELAY and Retry-After hold for all workers together.
XKCDCRAWL_FLEET_BUDGET = True
# The Redis key prefix of the per-host leases (shared by every crawl on that Redis).
XKCDCRAWL_FLEET_KEY = "xkcdcrawl:hosts"
# Seconds a dead worker's lease outlives it; live workers renew theirs.
XKCDCRAWL_FLEET_LEASE = 60.0
# Seconds between asks while a host's fleet budget is spent.
XKCDCRAWL_FLEET_POLL = 0.02

# One crawl per store (xkcdcrawl.lock): a lock in FILES_STORE/.xkcdcrawl/crawls/ for the whole run.
# A crawl that finds its store in use: "refuse" (exit status 2) or "wait".
XKCDCRAWL_STORE_LOCK = "refuse"
# Seconds between updates of this crawl's lock record.
XKCDCRAWL_STORE_LOCK_HEARTBEAT = 30.0
# A record from another host with no heartbeat this long is a dead crawl's.
XKCDCRAWL_STORE_LOCK_STALE = 300.0
# In wait mode: seconds between looks at the store.
XKCDCRAWL_STORE_LOCK_POLL = 1.0

# Nothing listens for commands: the telnet console and 2.19's remote-control endpoint run code.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
