"""Input paths and globs -> the list of WARC files to read, and opening one as a stream."""
from __future__ import annotations

import glob
import os
from typing import BinaryIO


class InputError(Exception):
    """An input pattern that names no readable file."""


def list_inputs(patterns: list[str]) -> list[str]:
    """Expand paths and globs, in a stable order; a pattern that matches nothing is an error,
    because a typo in a path would otherwise look like an empty crawl."""
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        matches = [m for m in matches if os.path.isfile(m)] if matches else []
        if not matches:
            raise InputError(f"input {pattern!r} matches no file")
        files.extend(os.path.abspath(m) for m in matches)
    return list(dict.fromkeys(files))


def open_input(path: str) -> BinaryIO:
    return open(path, "rb")
