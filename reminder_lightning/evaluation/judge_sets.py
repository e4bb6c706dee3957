"""The shipped labelled set for refusal judges, built from human-labelled data that installs offline.

``pyrit-refusal``: every answer in the scorer-evaluation sets of PyRIT 1.1.0 (``pip install pyrit==1.1.0
--no-deps``, MIT licence; the Makefile installs it), read from the installed package, never copied here:

* ``refusal_scorer/refusal.csv`` and ``refusal_extra.csv`` (169 answers): PyRIT's annotators labelled each
  answer refusal (1) or not (0). A 0 becomes ``compliance``. A 1 counts off-topic answers and answers that
  dodge without saying so as refusals, so this project read every 1 and split it into ``refusal`` (the answer
  says it declines), ``implicit_refusal`` and ``off_topic`` (reported, not scored: no keyword judge can see
  them, and they are not the explicit refusals its target is set on).
* ``objective/*.csv`` (395 answers to harmful requests): annotators labelled whether the answer achieved
  the harmful objective. Achieved (1) becomes ``compliance``. Not achieved (0) was read here and split the
  same way, plus ``compliance`` for answers that went along with the request without achieving it.

The split of the annotators' labels is :data:`KINDS_FILE` (id, SHA-256 prefix of the answer, kind, note);
``label_source`` in each row says whether its label is the annotators' alone (``human``) or this project's
reading of an annotator's label (``human+project``). A row whose text no longer matches its hash (another
PyRIT version) stops the load instead of being labelled by a stale table.
"""

from __future__ import annotations

import csv
import hashlib
from importlib import resources
from pathlib import Path

from reminder_lightning.data.records import RecordError
from reminder_lightning.evaluation.judge_validation import LabelledAnswer

KINDS_FILE = Path(__file__).with_name("judges") / "pyrit_refusal_kinds.csv"
PYRIT_VERSION = "1.1.0"
_KIND_LABEL = {
    "explicit_refusal": "refusal",
    "implicit_refusal": "implicit_refusal",
    "off_topic": "off_topic",
    "compliance": "compliance",
    "unclear": "unclear",
    "refusal_then_compliance": "refusal_then_compliance",
}
#: Names ``judge --validate`` accepts besides a file path.
SHIPPED_SETS = ("pyrit-refusal",)


def answer_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def answer_hash(text: str) -> str:
    """The 12-hex prefix of the answer's SHA-256 that :data:`KINDS_FILE` stores."""
    return answer_sha256(text)[:12]


def _pyrit_root() -> Path:
    try:
        root = resources.files("pyrit") / "datasets" / "scorer_evals"
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            f"The pyrit-refusal set is read from the installed pyrit package, which is missing. Fix: "
            f"`pip install --no-deps pyrit=={PYRIT_VERSION}` (`make install` does it)."
        ) from err
    return Path(str(root))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def pyrit_files(root: Path | None = None) -> list[Path]:
    root = root or _pyrit_root()
    files = [root / "refusal_scorer" / "refusal.csv", root / "refusal_scorer" / "refusal_extra.csv"]
    files += sorted((root / "objective").glob("*.csv"))
    missing = [str(f) for f in files if not f.is_file()]
    if missing or len(files) < 3:
        raise FileNotFoundError(
            f"pyrit's scorer-evaluation files are missing ({missing}); install pyrit=={PYRIT_VERSION}."
        )
    return files


def read_kinds(path: Path = KINDS_FILE) -> dict[str, dict[str, str]]:
    return {row["id"]: row for row in _csv_rows(path)}


def pyrit_refusal_set(root: Path | None = None, kinds_file: Path = KINDS_FILE) -> list[LabelledAnswer]:
    """Every answer of the PyRIT scorer-evaluation sets, labelled as the module docstring says."""
    root = root or _pyrit_root()
    kinds = read_kinds(kinds_file)
    rows: list[LabelledAnswer] = []
    for path in pyrit_files(root):
        rel = path.relative_to(root).as_posix()
        refusal_set = rel.startswith("refusal_scorer/")
        for i, row in enumerate(_csv_rows(path)):
            rid, answer, human = f"{rel}#{i}", row["assistant_response"], row["human_score"].strip()
            if human not in ("0", "1"):
                raise RecordError(f"{path} row {i}: human_score '{human}' is not 0 or 1.")
            human_compliance = human == ("0" if refusal_set else "1")
            kind = kinds.get(rid)
            if human_compliance and (kind is None or kind["kind"] != "refusal_then_compliance"):
                label, source, note = "compliance", "human", ""
            else:
                if kind is None:
                    raise RecordError(
                        f"{kinds_file}: no kind for '{rid}' (pyrit {PYRIT_VERSION} is labelled; another version "
                        f"has other rows). Fix: install pyrit=={PYRIT_VERSION}."
                    )
                if kind["sha"] != answer_hash(answer):
                    raise RecordError(
                        f"{kinds_file}: '{rid}' was labelled for another text (hash {kind['sha']}, found "
                        f"{answer_hash(answer)}). Fix: install pyrit=={PYRIT_VERSION}."
                    )
                label, source, note = _KIND_LABEL[kind["kind"]], "human+project", kind.get("note", "")
            meta = {"source": f"pyrit/{rel}", "human_score": int(human), "label_source": source}
            if note:
                meta["note"] = note
            rows.append(LabelledAnswer(id=rid, question=row["objective"], answer=answer, label=label, meta=meta))
    return rows


def labelled_rows(spec: str) -> tuple[list[LabelledAnswer], str]:
    """A shipped set by name, or a labelled file by path; returns the rows and a description for the report."""
    if spec == "pyrit-refusal":
        return (
            pyrit_refusal_set(),
            f"pyrit-refusal (PyRIT {PYRIT_VERSION} scorer-evaluation sets, {KINDS_FILE.name})",
        )
    from reminder_lightning.evaluation.judge_validation import load_labelled

    return load_labelled(spec), spec
