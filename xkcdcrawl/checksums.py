"""What a server says a file must be: digest headers, and checksum files beside it in a listing."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# hashlib's names, and the length of their hex digests.
ALGORITHMS = {"md5": 32, "sha256": 64, "sha512": 128}
# RFC 9530 / RFC 3230 names.
_HEADER_NAMES = {"md5": "md5", "sha-256": "sha256", "sha-512": "sha512", "sha256": "sha256", "sha512": "sha512"}
# Checksum files a listing may hold: the digests of the files beside them.
SUMS_FILES = {"SHA256SUMS": "sha256", "SHA512SUMS": "sha512", "MD5SUMS": "md5"}
SUMS_SUFFIXES = {".sha256": "sha256", ".sha512": "sha512", ".md5": "md5"}
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{32,128})\s+\*?(.+?)\s*$")
_BSD_LINE = re.compile(r"^(MD5|SHA256|SHA512) \((.+)\) = ([0-9a-fA-F]{32,128})\s*$")


def header_digests(headers: Mapping[bytes, Any]) -> dict[str, str]:
    """{algorithm: hex digest} of the whole file from Repr-Digest, Digest and Content-MD5 headers."""
    found: dict[str, str] = {}
    get = headers.get
    for name in (b"Repr-Digest", b"Digest"):
        value = get(name)
        for item in _header_text(value).split(","):
            key, _, encoded = item.strip().partition("=")
            algorithm = _HEADER_NAMES.get(key.strip().lower())
            if algorithm and (digest := _decode(encoded.strip().strip(":"), algorithm)):
                found.setdefault(algorithm, digest)
    if (md5 := _decode(_header_text(get(b"Content-MD5")).strip(), "md5")) is not None:
        found.setdefault("md5", md5)
    return found


def _header_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value) if value else ""


def _decode(encoded: str, algorithm: str) -> str | None:
    """A base64 digest as hex, when it has the length of `algorithm`'s."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    digest = raw.hex()
    return digest if len(digest) == ALGORITHMS[algorithm] else None


def sums_algorithm(name: str) -> str | None:
    """The algorithm of a checksum file's digests, from its name, or None if it is not one."""
    if name in SUMS_FILES:
        return SUMS_FILES[name]
    return next((algo for suffix, algo in SUMS_SUFFIXES.items() if name.lower().endswith(suffix)), None)


def parse_sums(text: str, algorithm: str) -> dict[str, str]:
    """{file name: hex digest} of a checksum file (GNU `sha256sum` or BSD `shasum --tag` lines)."""
    digests: dict[str, str] = {}
    for line in text.splitlines():
        if match := _SUMS_LINE.match(line):
            digest, name = match[1].lower(), match[2]
        elif match := _BSD_LINE.match(line):
            digest, name = match[3].lower(), match[2]
        else:
            continue
        if len(digest) == ALGORITHMS[algorithm]:
            digests[name.removeprefix("./")] = digest
    return digests


class ChecksumError(Exception):
    """A file that is not what the server's digest header or checksum file says it is."""


def check(expected: Mapping[str, str], computed: Mapping[str, str]) -> None:
    """Raise ChecksumError, naming every algorithm whose digest is not the expected one."""
    if problems := list(mismatches(expected, computed)):
        raise ChecksumError("checksum mismatch: " + "; ".join(problems))


def mismatches(expected: Mapping[str, str], computed: Mapping[str, str]) -> Iterable[str]:
    """One line per algorithm whose digest is not the expected one."""
    for algorithm, digest in expected.items():
        if computed.get(algorithm, digest) != digest:
            yield f"{algorithm} is {computed[algorithm]}, expected {digest}"
