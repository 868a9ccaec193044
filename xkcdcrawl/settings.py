"""Settings of xkcdcrawl: polite to public sites, safe on disk. Override any with -s NAME=VALUE."""

BOT_NAME = "xkcdcrawl"
SPIDER_MODULES = ["xkcdcrawl.spiders"]
NEWSPIDER_MODULE = "xkcdcrawl.spiders"
COMMANDS_MODULE = "xkcdcrawl.commands"

# Who we are, and how hard we knock: per host, never more than this many requests at once.
USER_AGENT = "xkcdcrawl/0.1 (bulk file downloader built on Scrapy)"
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 32
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_DELAY = 0
DOWNLOADER = "xkcdcrawl.downloader.PoliteDownloader"  # makes the per-host limit hold
AUTOTHROTTLE_ENABLED = False
DOWNLOAD_TIMEOUT = 30
RETRY_ENABLED = True
RETRY_TIMES = 3

# Files: real names under FILES_STORE, written atomically, kept until deleted.
ITEM_PIPELINES = {"xkcdcrawl.pipelines.NamedFilesPipeline": 300}
FILES_STORE = "downloads"
FILES_EXPIRES = 365 * 100  # days: a stored file is never fetched again because of its age
MEDIA_ALLOW_REDIRECTS = True

# Our own knobs.
XKCDCRAWL_ARCHIVE = True  # record complete items in FILES_STORE/.xkcdcrawl/ so re-runs skip them
XKCDCRAWL_FAIL_ON_ERROR = True  # exit status 1 when any file failed
XKCDCRAWL_PROGRESS_INTERVAL = 5.0  # seconds between progress reports; 0 turns them off

EXTENSIONS = {"xkcdcrawl.extensions.progress.Progress": 500}
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"

# Nothing listens for commands: the telnet console and 2.19's remote-control endpoint run code.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
