"""The servers the tests crawl: in-process HTTP servers and real ones started by PID."""
