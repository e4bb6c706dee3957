"""Results on disk, written as they are produced so a killed run resumes without repeating or losing work.

* ``generations.rank<R>.jsonl``: one line per generated answer, appended and flushed by each rank.
* ``generations.jsonl``: the merged, de-duplicated generations (written by rank zero at the end).
* ``judgements.<judge>.jsonl``: one verdict per generation and judge, appended as judged.

Lines are keyed by ``benchmark/id``. A torn last line (a kill mid-write) is ignored on read and the
record is simply produced again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def sample_key(benchmark: str, sample_id: str) -> str:
    return f"{benchmark}/{sample_id}"


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Complete lines of a JSONL file; a final partial line (interrupted write) is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):  # torn final line from a killed run: redo that record
                break
            raise ValueError(f"{path}, line {number}: not valid JSON ({err}); the file is corrupt.") from err
    return rows


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``rows`` as a whole JSONL file, atomically (a temporary file, then a rename): readers see the old
    file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


class JsonlAppender:
    """Appends one JSON object per line and flushes, so every finished record survives a kill."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._file = self.path.open("a", encoding="utf-8")

    def _repair_tail(self) -> None:
        """Drop a torn final line left by a killed writer, so appends start on a clean line."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        self.path.write_bytes(data[:cut])

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def write_all(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.write(row)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def done_keys(output_dir: Path) -> set[str]:
    """Keys of every generation already on disk (merged file and every rank's file)."""
    keys = set()
    for path in [output_dir / "generations.jsonl", *sorted(output_dir.glob("generations.rank*.jsonl"))]:
        keys.update(row["key"] for row in read_jsonl(path))
    return keys


def check_same_run(output_dir: Path, defence: dict[str, Any], decoding: dict[str, Any]) -> None:
    """Refuse a results folder that holds answers of another run.

    Resuming skips every answered sample, so answers made by another defence (or the same defence with another
    artifact, threshold or decoding) would be reported as this run's. Every generation on disk must carry exactly
    this ``defence`` description and these ``decoding`` settings.
    """
    for path in [output_dir / "generations.jsonl", *sorted(output_dir.glob("generations.rank*.jsonl"))]:
        for row in read_jsonl(path):
            for field, current in (("defence", defence), ("decoding", decoding)):
                stored = row.get(field)
                if stored != current:
                    changed = sorted(
                        k for k in set(stored or {}) | set(current) if (stored or {}).get(k) != current.get(k)
                    )
                    raise ValueError(
                        f"{path}: record '{row.get('key')}' was generated with another {field} (differs in "
                        f"{changed}: stored {stored}, this run {current}); resuming would report those answers as "
                        "this run's. Fix: give this run its own output_dir (--model.output_dir), or delete "
                        f"{output_dir} to start over."
                    )


def merge_generations(output_dir: Path, order: list[str] | None = None) -> list[dict[str, Any]]:
    """Union of the merged file and the rank files, first occurrence of each key kept, in ``order``."""
    seen: dict[str, dict[str, Any]] = {}
    for path in [output_dir / "generations.jsonl", *sorted(output_dir.glob("generations.rank*.jsonl"))]:
        for row in read_jsonl(path):
            seen.setdefault(row["key"], row)
    if order is not None:
        rank = {k: i for i, k in enumerate(order)}
        rows = sorted(seen.values(), key=lambda r: rank.get(r["key"], len(rank)))
    else:
        rows = list(seen.values())
    write_jsonl(output_dir / "generations.jsonl", rows)
    for path in output_dir.glob("generations.rank*.jsonl"):
        path.unlink()
    return rows
