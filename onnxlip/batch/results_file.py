"""The results file of a batch run (``--results FILE.jsonl``): one JSON line per finished input.

The first line is a header: the SHA-256 of the model file and of the inputs and labels, and the
options that change a radius. A second run with the same file reads the inputs already there and
computes only the others, so an interrupted run resumes where it stopped; a file whose header
differs is refused (never mixed: its radii would answer another question). Each record is written
and flushed as soon as its input finishes, so a crash loses at most the line being written; a
torn last line is dropped on resume. Non-finite radii are written as JSON's ``Infinity`` (Python
reads them back exactly).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import InputError

FORMAT = "onnxlip-results/1"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def array_digest(array: np.ndarray | None) -> str | None:
    """Digest of an array's values, shape and dtype (None for None)."""
    if array is None:
        return None
    a = np.ascontiguousarray(array)
    return sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())


def make_header(model_digest: str, inputs: np.ndarray, labels: np.ndarray | None,
                options: dict[str, Any]) -> dict[str, Any]:
    """The header line: what the radii in the file depend on (JSON round-tripped, so that it
    compares equal to the header read back from a file)."""
    header = {"format": FORMAT, "model_sha256": model_digest, "inputs_sha256": array_digest(inputs),
              "labels_sha256": array_digest(labels), "n": int(len(inputs)), "options": options}
    return json.loads(json.dumps(header))


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the header fields (options by name) that differ, for the error message."""
    names = [k for k in new if k != "options" and old.get(k) != new[k]]
    old_opts, new_opts = old.get("options") or {}, new["options"]
    names += [k for k in sorted(set(old_opts) | set(new_opts)) if old_opts.get(k) != new_opts.get(k)]
    return [n.replace("_sha256", "") for n in names]


def _complete_lines(path: Path) -> tuple[list[str], int]:
    """The file's complete lines and the byte length they span (a torn last line excluded)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8").splitlines(), end


def read_done(path: Path, header: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Records already in ``path`` by input index ({} for a missing or empty file); raises
    InputError when the file belongs to another model, data set or options."""
    if not path.exists() or path.stat().st_size == 0:
        return {}
    try:
        lines, _ = _complete_lines(path)
        old = json.loads(lines[0]) if lines else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        old = None
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise InputError(f"{path}: not an onnxlip results file (use another --results file)")
    changed = _differences(old, header)
    if changed:
        raise InputError(f"{path}: results of another run (different {', '.join(changed)}); "
                         "use another --results file or delete this one")
    done: dict[int, dict[str, Any]] = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a crash mid-write, then appended to
            continue
        if isinstance(record, dict) and isinstance(record.get("index"), int) and 0 <= record["index"] < header["n"]:
            done.setdefault(record["index"], record)
    return done


class ResultsWriter:
    """Appends records to the results file, one flushed line each (a no-op without a file)."""

    def __init__(self, path: Path | None, header: dict[str, Any]):
        self._file: IO[str] | None = None
        if path is None:
            return
        try:
            fresh = not path.exists() or path.stat().st_size == 0
            if not fresh:  # drop a torn last line, so the next record starts on a line of its own
                _, end = _complete_lines(path)
                os.truncate(path, end)
            self._file = open(path, "a", encoding="utf-8")
            if fresh:
                self.write(header)
        except OSError as exc:
            raise InputError(f"{path}: cannot write the results file ({exc.strerror})") from None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
