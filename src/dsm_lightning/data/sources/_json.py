"""JSON annotation files with error messages that name the file and line (SSv2, Diving48)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from dsm_lightning.data.sources._files import require_file
from dsm_lightning.data.sources.base import AnnotationError

_WHITESPACE = " \t\n\r"


def _text(path: str) -> str:
    try:
        with open(require_file(path), encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not a text file ({err})") from err


def _bad_json(path: str, err: json.JSONDecodeError) -> AnnotationError:
    return AnnotationError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})")


def read_json(path: str) -> Any:
    """The JSON document of ``path``.

    Raises:
        AnnotationError: the file is missing or not valid JSON (naming file and line).
    """
    try:
        return json.loads(_text(path))
    except json.JSONDecodeError as err:
        raise _bad_json(path, err) from err


def json_list_entries(path: str) -> list[tuple[int, Any]]:
    """The entries of a JSON file holding one list, each with the line it starts on.

    Args:
        path: the file (e.g. ``[{"id": "1", ...}, {"id": "2", ...}]``).

    Returns:
        ``(line, entry)`` pairs in file order; lines count from 1.

    Raises:
        AnnotationError: the file is missing, not valid JSON or not a list (naming file
            and line).
    """
    text = _text(path)
    decoder = json.JSONDecoder()
    pos, line = 0, 1

    def skip(at: int) -> int:
        while at < len(text) and text[at] in _WHITESPACE:
            at += 1
        return at

    def line_at(at: int) -> int:
        nonlocal pos, line
        line += text.count("\n", pos, at)
        pos = at
        return line

    at = skip(0)
    if not text.startswith("[", at):
        raise AnnotationError(f"{path}, line {line_at(at)}: expected a JSON list of entries")
    entries: list[tuple[int, Any]] = []
    at = skip(at + 1)
    if text.startswith("]", at):
        return entries
    while True:
        try:
            entry, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError as err:
            raise _bad_json(path, err) from err
        entries.append((line_at(at), entry))
        at = skip(end)
        if text.startswith("]", at):
            return entries
        if not text.startswith(",", at):
            raise AnnotationError(f"{path}, line {line_at(at)}: expected ',' or ']' after an entry")
        at = skip(at + 1)


def find_file(directory: str, names: Iterable[str], what: str) -> str:
    """The first of ``names`` that exists in ``directory``.

    Raises:
        AnnotationError: none exists (the message lists the names tried).
    """
    names = list(names)
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise AnnotationError(f"{directory}: no {what} file (looked for {', '.join(names)})")
