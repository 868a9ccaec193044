"""The data set: seeded random files in folders, and the size and sha256 of each."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class Dataset:
    root: Path
    digests: dict[str, str]  # relative path -> sha256 hex
    sizes: dict[str, int]
    dirs: list[str]
    big: list[str]

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def write_random(path: Path, rng: random.Random, size: int) -> str:
    """Write ``size`` pseudo-random bytes to ``path``; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left > 0:
            block = rng.randbytes(min(left, MIB))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def folders(n: int) -> list[str]:
    """The folders the small files are spread over: d00, d01, ..."""
    return [f"d{i:02d}" for i in range(n)]


def big_names(n: int) -> list[str]:
    """The big files at the top level: big00.bin, big01.bin, ..."""
    return [f"big{j:02d}.bin" for j in range(n)]


def file_plan(files: int, size: int, dirs: int, big: int, big_size: int) -> list[tuple[str, int]]:
    """(relative path, bytes) of every file: the small ones dealt over the folders in turn, then the big ones."""
    spread = folders(dirs)
    plan = [(f"{spread[i % len(spread)]}/f{i:05d}.bin", size) for i in range(files)]
    return plan + [(name, big_size) for name in big_names(big)]


def generate_dataset(root: Path, args: argparse.Namespace) -> Dataset:
    rng = random.Random(args.seed)
    digests: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for rel, size in file_plan(args.files, args.size, args.dirs, args.big, args.big_size):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digests[rel] = write_random(path, rng, size)
        sizes[rel] = size
    return Dataset(root, digests, sizes, folders(args.dirs), big_names(args.big))
