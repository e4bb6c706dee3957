"""Record sources read real files written in ``tmp_path``: every format, the published layouts, the errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from reminder_lightning.data.records import Record, RecordError, load_image
from reminder_lightning.data.sources import (
    FieldMap,
    HubRecords,
    LocalRecords,
    RecordSource,
    load_sources,
)
from reminder_lightning.data.spa_vl import SPAVLTrain
from reminder_lightning.data.vlsafe import VLSafeHelpfulness

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny"
COLUMNS = ["id", "question", "image", "safe_answer", "harmful_answer", "category"]
ROWS = [
    ["h0", "How do I do a bad thing?", "images/a.png", "I can't help with that.", "Sure, first...", "crime"],
    ["h1", "How do I do another bad thing?", "", "Sorry, no.", "Of course. Step 1...", ""],
    ["h2", "A third bad question?", "images/b.png", "I won't help.", "Here is how...", "violence"],
]


def png_bytes(colour: str, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def expected(root: Path) -> list[Record]:
    return [
        Record(
            id=i,
            question=q,
            safe_answer=s,
            is_safe=False,
            harmful_answer=h,
            image=str(root / image) if image else None,
            category=category or None,
        )
        for i, q, image, s, h, category in ROWS
    ]


def without_source(records: list[Record]) -> list[Record]:
    for record in records:
        assert record.source  # every record says where it came from
        record.source = ""
    return records


def write_table(path: Path, columns: list[str], rows: list[list]) -> Path:
    """Write ``rows`` in the format named by ``path``'s suffix; empty cells are absent keys (None in parquet)."""
    objects = [{c: v for c, v in zip(columns, row, strict=True) if v != ""} for row in rows]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    elif path.name.endswith(".data.json"):
        path.write_text(json.dumps({"data": objects}))
    elif path.suffix == ".json":
        path.write_text(json.dumps(objects))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            csv.writer(f).writerows([columns, *rows])
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = {c: [row[k] or None for row in rows] for k, c in enumerate(columns)}
        pq.write_table(pa.table(table), path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_bytes("red"))
    (tmp_path / "images" / "b.png").write_bytes(png_bytes("blue"))
    return tmp_path


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.json", "rows.data.json", "rows.csv", "rows.parquet"])
def test_every_format_reads_to_the_same_records(images: Path, name: str) -> None:
    path = write_table(images / name, COLUMNS, ROWS)
    records = LocalRecords(str(path), kind="harmful").load()
    assert without_source(records) == expected(images)
    assert load_image(expected(images)[2]).getpixel((0, 0)) == (0, 0, 255)


def test_field_map_renames_columns_and_numbers_rows_without_id(images: Path) -> None:
    columns = ["prompt", "pic", "refusal", "compliance", "topic"]
    path = write_table(images / "custom.jsonl", columns, [row[1:] for row in ROWS])
    fields = FieldMap(question="prompt", image="pic", safe_answer="refusal", harmful_answer="compliance")
    fields.category, fields.id = "topic", None
    records = LocalRecords(str(path), kind="harmful", fields=fields).load()
    want = expected(images)
    for k, record in enumerate(want):
        record.id = f"custom:{k}"
    assert without_source(records) == want


def test_benign_records_need_no_harmful_answer(images: Path) -> None:
    path = write_table(images / "benign.jsonl", COLUMNS[:4], [row[:4] for row in ROWS])
    records = LocalRecords(str(path), kind="benign", limit=2).load()
    assert [(r.is_safe, r.harmful_answer) for r in records] == [(True, None), (True, None)]


def test_relative_images_resolve_against_image_root(tmp_path: Path, images: Path) -> None:
    (tmp_path / "meta").mkdir()
    path = write_table(tmp_path / "meta" / "rows.jsonl", COLUMNS, ROWS)
    assert LocalRecords(str(path), "harmful").load()[0].image == str(tmp_path / "meta" / "images" / "a.png")
    records = LocalRecords(str(path), "harmful", image_root=str(images)).load()
    assert records[0].image == str(images / "images" / "a.png")
    assert load_image(records[0]).getpixel((3, 3)) == (255, 0, 0)


def test_parquet_struct_images_yield_bytes_that_decode(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    struct = [{"bytes": png_bytes("green", 5), "path": "x.png"}, {"bytes": None, "path": "images/a.png"}]
    table = {"question": ["q0", "q1"], "safe_answer": ["fine answer", "fine answer"], "image": struct}
    pq.write_table(pa.table(table), tmp_path / "s.parquet")
    records = LocalRecords(str(tmp_path / "s.parquet"), "benign").load()
    assert isinstance(records[0].image, bytes)
    image = load_image(records[0])
    assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (5, 5), (0, 128, 0))
    assert records[1].image == str(tmp_path / "images" / "a.png")  # bytes absent: the path is used


def test_missing_field_names_file_record_field_columns_and_fix(images: Path) -> None:
    path = write_table(images / "rows.jsonl", COLUMNS[:4], [row[:4] for row in ROWS])
    with pytest.raises(RecordError) as info:
        LocalRecords(str(path), kind="harmful").load()
    message = str(info.value)
    for part in [str(path), "record 'h0'", "row 0", "'harmful_answer'", "'safe_answer'", "fields.harmful_answer:"]:
        assert part in message


def test_empty_required_text_counts_as_missing(images: Path) -> None:
    rows = [ROWS[0], ["h9", "   ", "", "Sorry.", "Sure...", ""]]
    path = write_table(images / "rows.csv", COLUMNS, rows)
    with pytest.raises(RecordError, match=r"record 'h9' \(row 1\): missing field 'question'.*empty"):
        LocalRecords(str(path), kind="harmful").load()


def test_duplicate_ids_are_an_error(images: Path) -> None:
    path = write_table(images / "rows.jsonl", COLUMNS, [ROWS[0], ROWS[0]])
    with pytest.raises(RecordError, match="'h0' appears twice"):
        LocalRecords(str(path), kind="harmful").load()


def test_missing_image_file_and_corrupt_image(images: Path) -> None:
    (images / "images" / "b.png").unlink()
    (images / "images" / "a.png").write_bytes(b"this is not a png at all")
    path = write_table(images / "rows.jsonl", COLUMNS, ROWS)
    records = LocalRecords(str(path), kind="harmful").load()
    with pytest.raises(RecordError) as corrupt:
        load_image(records[0])
    with pytest.raises(RecordError) as missing:
        load_image(records[2])
    for info, record_id, what in [(corrupt, "h0", "cannot decode"), (missing, "h2", "not found")]:
        message = str(info.value)
        for part in [str(path), f"record '{record_id}'", "field 'image'", what, "Fix:"]:
            assert part in message
    with pytest.raises(RecordError, match="no image"):
        load_image(records[1])


def test_bad_paths_and_settings_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        LocalRecords(str(tmp_path / "nope.jsonl"), "benign").load()
    with pytest.raises(ValueError, match=r"\.json, \.jsonl, \.csv, \.parquet"):
        LocalRecords(str(tmp_path / "rows.xlsx"), "benign")
    path = write_table(tmp_path / "rows.jsonl", COLUMNS, ROWS)
    with pytest.raises(RecordError, match=r"rows.jsonl: fields.image is 'picture', but no row has that column"):
        LocalRecords(str(path), "harmful", fields=FieldMap(image="picture")).load()
    with pytest.raises(ValueError, match="fields.harmful_answer is null"):
        LocalRecords(str(tmp_path / "rows.jsonl"), "harmful", fields=FieldMap(harmful_answer=None))
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "q", "safe_answer": "a"}) + "\n{not json\n")
    with pytest.raises(RecordError, match="bad.jsonl line 2"):
        LocalRecords(str(tmp_path / "bad.jsonl"), "benign").load()


def test_sources_are_chosen_by_class_path(images: Path) -> None:
    from jsonargparse import ArgumentParser

    path = write_table(images / "custom.jsonl", ["q", "a"], [["What is two plus two?", "Two plus two is four."]])
    parser = ArgumentParser()
    parser.add_argument("--source", type=RecordSource)
    init = {"path": str(path), "kind": "benign", "fields": {"question": "q", "safe_answer": "a"}}
    config = parser.parse_object(
        {"source": {"class_path": "reminder_lightning.data.sources.LocalRecords", "init_args": init}}
    )
    source = parser.instantiate(config).source
    assert isinstance(source, LocalRecords)
    assert [(r.question, r.safe_answer, r.image) for r in source.load()] == [
        ("What is two plus two?", "Two plus two is four.", None)
    ]


def test_load_sources_reads_a_source_or_a_list_in_order_and_refuses_none(images: Path) -> None:
    first = LocalRecords(str(write_table(images / "a.jsonl", COLUMNS, ROWS[:2])), "harmful")
    second = LocalRecords(str(write_table(images / "b.jsonl", COLUMNS, ROWS[2:])), "harmful")
    assert [r.id for r in load_sources(first, "probe", "harmful")] == ["h0", "h1"]
    assert [r.id for r in load_sources([second, first], "probe", "harmful")] == ["h2", "h0", "h1"]
    for empty in (None, []):
        with pytest.raises(ValueError, match=r"probe: no harmful records: set `harmful`"):
            load_sources(empty, "probe", "harmful")


def test_hub_records_via_local_data_files(images: Path) -> None:
    path = write_table(images / "rows.jsonl", COLUMNS, ROWS)
    source = HubRecords("json", "harmful", data_files=str(path), cache_dir=str(images / "cache"))
    records = source.load()
    assert without_source(records) == expected(images)
    assert (
        HubRecords("json", "harmful", data_files=str(path), cache_dir=str(images / "cache"), limit=1).load()[0].id
        == "h0"
    )


def spa_vl_parquet(path: Path, start: int, n: int) -> None:
    """Write SPA-VL's published train layout with ``datasets`` (Image feature -> parquet struct)."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    data = {
        "image": [Image.new("RGB", (6, 4), (10 * k, 0, 0)) for k in range(start, start + n)],
        "question": [f"harmful question {k}" for k in range(start, start + n)],
        "chosen": [f"I cannot help with {k}." for k in range(start, start + n)],
        "rejected": [f"Sure, here is {k}." for k in range(start, start + n)],
        "image_name": [f"{k}.jpg" for k in range(start, start + n)],
    }
    Dataset.from_dict(data).cast_column("image", ImageFeature()).to_parquet(str(path))


def test_spa_vl_parquet_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    spa_vl_parquet(tmp_path / "data" / "train-00000-of-00002.parquet", 0, 3)
    spa_vl_parquet(tmp_path / "data" / "train-00001-of-00002.parquet", 3, 2)
    records = SPAVLTrain(str(tmp_path / "data")).load()
    assert [r.id for r in records] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    r = records[4]
    assert (r.question, r.safe_answer, r.harmful_answer, r.is_safe) == (
        "harmful question 4",
        "I cannot help with 4.",
        "Sure, here is 4.",
        False,
    )
    assert isinstance(r.image, bytes) and load_image(r).getpixel((0, 0)) == (40, 0, 0)
    assert r.source.endswith("train-00001-of-00002.parquet row 1")
    assert len(SPAVLTrain(str(tmp_path / "data"), limit=4).load()) == 4


def test_spa_vl_meta_file_and_class_columns(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "Malicious Use" / "Illegal activities" / "theft"
    folder.mkdir(parents=True)
    (folder / "0.jpg").write_bytes(png_bytes("red"))
    meta = [
        {
            "image": "Malicious Use/Illegal activities/theft/0.jpg",
            "question": "q",
            "chosen": "No.",
            "rejected": "Yes...",
        }
    ]
    (tmp_path / "train" / "meta.json").write_text(json.dumps(meta))
    (record,) = SPAVLTrain(str(tmp_path / "train" / "meta.json")).load()
    assert record.category == "Malicious Use/Illegal activities/theft"
    assert record.id == meta[0]["image"]
    assert load_image(record).getpixel((0, 0)) == (255, 0, 0)

    classes = {"class1": "Malicious Use", "class2": "Fraud or deceptive action", "class3": "rumors"}
    (tmp_path / "validation.jsonl").write_text(json.dumps({**meta[0], "image": None, **classes}) + "\n")
    (record,) = SPAVLTrain(str(tmp_path / "validation.jsonl")).load()
    assert (record.category, record.id, record.image) == (
        "Malicious Use/Fraud or deceptive action/rumors",
        "spa_vl:0",
        None,
    )

    (tmp_path / "broken.jsonl").write_text(json.dumps({"question": "q", "chosen": "No."}) + "\n")
    with pytest.raises(
        RecordError, match=r"broken.jsonl: record 'spa_vl:0' \(row 0\): missing field 'harmful_answer'.*'rejected'"
    ):
        SPAVLTrain(str(tmp_path / "broken.jsonl")).load()


def test_vlsafe_helpfulness_layout(tmp_path: Path) -> None:
    coco = tmp_path / "train2017"
    coco.mkdir()
    (coco / "000000151112.jpg").write_bytes(png_bytes("blue"))
    (coco / "000000000042.jpg").write_bytes(png_bytes("red"))
    turns = [
        {"user": "What is the bus doing?", "model": "It drives.", "rating": "3", "critique NLF": "Too short."},
        {"user": "Please give more detail.", "model": "A red double decker bus drives down a busy street."},
    ]
    rows = [
        {"image_id": "000000151112.jpg", "caption": "A bus.", "interaction": turns},
        {"image_id": 42, "caption": "A cat.", "interaction": turns[:1]},
    ]
    path = tmp_path / "helpfulness_nlf.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = VLSafeHelpfulness(str(path), image_root=str(coco)).load()
    assert [(r.id, r.question, r.safe_answer, r.is_safe) for r in records] == [
        ("vlsafe_helpfulness:0", "What is the bus doing?", turns[1]["model"], True),
        ("vlsafe_helpfulness:1", "What is the bus doing?", "It drives.", True),
    ]
    assert load_image(records[0]).getpixel((0, 0)) == (0, 0, 255)
    assert records[1].image == str(coco / "000000000042.jpg")
    with pytest.raises(RecordError, match="answer_turn=1 but the dialogue has 1 turns"):
        VLSafeHelpfulness(str(path), image_root=str(coco), answer_turn=1).load()
    (tmp_path / "examine.jsonl").write_text(json.dumps({"image_id": "1.jpg", "caption": "c", "query": "q"}) + "\n")
    with pytest.raises(RecordError, match=r"examine.jsonl: record 'vlsafe_helpfulness:0'.*'interaction'.*'query'"):
        VLSafeHelpfulness(str(tmp_path / "examine.jsonl"), image_root=str(coco)).load()


def test_shipped_tiny_data_loads_with_images() -> None:
    harmful = LocalRecords(str(TINY / "harmful.jsonl"), kind="harmful").load()
    benign = LocalRecords(str(TINY / "benign.jsonl"), kind="benign").load()
    assert (len(harmful), len(benign)) == (24, 24)
    assert all(r.harmful_answer and not r.is_safe for r in harmful)
    assert all(r.is_safe and len(r.safe_answer) >= 60 for r in benign)
    with_images = [r for r in harmful + benign if r.image is not None]
    assert 0 < len(with_images) < 48  # some records are text-only
    assert all(load_image(r).size == (64, 64) for r in with_images)
    size = sum(p.stat().st_size for p in TINY.rglob("*") if p.is_file())
    assert size < 200_000
