"""Each reader on small fixtures: quoting, BOM, CRLF, _comma_, pairing, both JSONL shapes, datasets folders."""

from __future__ import annotations

import json

import pytest

from empathy_distill.config import DataConfig, ValidationConfig
from empathy_distill.data.ingest import ingest, read_dialogues
from empathy_distill.data.readers import detect_format
from tests.conftest import lvh_csv, lvh_record


def run(path, fmt="auto"):
    return ingest(path, DataConfig(path=str(path), format=fmt), ValidationConfig())


def test_lvh_quoted_commas_bom_and_crlf(write):
    text = lvh_csv([lvh_record(1, situation='She said "wait, please", then left.'), lvh_record(2)], line_end="\r\n")
    path = write("bom.csv", ("\ufeff" + text).encode("utf-8"))
    assert detect_format(path) == "llms_vs_humans"
    result = run(path)
    assert result.report.responses_read == 10
    assert result.report.rows_kept == 10
    row = result.table[(result.table.dialogue_id == "d1") & (result.table.source == "chatgpt")].iloc[0]
    assert row.situation == 'She said "wait, please", then left.'
    assert not any(text.endswith("\r") for text in result.table["response"])
    assert " ".join(result.table.columns) == "dialogue_id emotion situation utterance source response rating split"
    assert str(result.table["rating"].dtype) == "Int64"


def test_lvh_multiline_quoted_field_keeps_line_numbers(write):
    path = write(
        "multi.csv", lvh_csv([lvh_record(1, situation="line one\r\nline two"), lvh_record(2, rating_human="9")])
    )
    result = run(path)
    assert result.table.loc[result.table.dialogue_id == "d1", "situation"].iloc[0] == "line one\nline two"
    bad = result.quarantine.iloc[0]
    assert (bad["record"], bad["reason"]) == (4, "bad_rating")  # header=1, d1 spans 2-3, d2 starts on 4


ED_TEXT = (
    "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
    "hit:1_conv:2,1,proud,I built a shed_comma_ all by myself,10,I finished my shed today_comma_ "
    "finally!,5|5|5_2|2|5,\n"
    "hit:1_conv:2,2,proud,I built a shed_comma_ all by myself,11,Nice work_comma_ how long did it take?,5|5|5_2|2|5,\n"
    "hit:1_conv:2,3,proud,I built a shed_comma_ all by myself,10,About three weekends,5|5|5_2|2|5,\n"
    "hit:1_conv:2,4,proud,I built a shed_comma_ all by myself,11,That is impressive for a first try,5|5|5_2|2|5,\n"
    "hit:3_conv:6,1,lonely,Nobody called on my birthday,20,I spent my birthday alone,1|1|1_1|1|1,extra,field\n"
    "hit:3_conv:6,2,lonely,Nobody called on my birthday,21,I am sorry_comma_ that hurts,1|1|1_1|1|1,\n"
    "hit:3_conv:6,3,lonely,Nobody called on my birthday,20,Thanks for asking,1|1|1_1|1|1,\n"
)


def test_empathetic_dialogues_pairs_turns_and_restores_commas(write):
    path = write("ed.csv", ED_TEXT)
    assert detect_format(path) == "empathetic_dialogues"
    result = run(path)
    table = result.table.set_index("dialogue_id")
    assert list(table.index) == ["hit:1_conv:2:1", "hit:1_conv:2:3", "hit:3_conv:6:1"]
    first = table.loc["hit:1_conv:2:1"]
    assert first.situation == "I built a shed, all by myself"
    assert first.utterance == "I finished my shed today, finally!"
    assert first.response == "Nice work, how long did it take?"
    assert (first.emotion, first.source) == ("proud", "human")
    assert result.table["rating"].isna().all()
    # the last speaker turn of conv 6 has no reply: quarantined, not lost
    assert result.quarantine["reason"].tolist() == ["unpaired_turn"]
    assert result.report.rows_kept + result.report.rows_quarantined == result.report.responses_read == 4
    assert result.report.split_method == "hash"


def test_jsonl_nested_and_flat(write):
    lines = [
        {
            "dialogue_id": "a",
            "emotion": "afraid",
            "situation": "A dog chased me.",
            "utterance": "My heart is still racing.",
            "responses": [
                {"source": "human", "response": "Yikes, are you ok?", "rating": 2},
                {"source": "teacher", "response": "That sounds frightening; I am glad you are safe.", "rating": None},
            ],
        },
        {
            "dialogue_id": "b",
            "emotion": "joyful",
            "situation": "I got the job.",
            "utterance": "I start Monday!",
            "source": "human",
            "response": "Congratulations!",
            "rating": 3,
            "split": "test",
        },
    ]
    path = write("d.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert detect_format(path) == "jsonl"
    result = run(path)
    assert result.report.rows_kept == 3
    assert result.table.set_index("dialogue_id").loc["b", "split"] == "test"
    assert result.table.loc[result.table.source == "teacher", "rating"].isna().all()


@pytest.mark.parametrize("as_dict", [False, True])
def test_hf_datasets_folder(tmp_path, as_dict):
    from datasets import Dataset, DatasetDict

    rows = [lvh_record(i) for i in range(4)]
    ds = Dataset.from_list(rows)
    folder = tmp_path / "ds"
    (DatasetDict({"train": ds.select(range(3)), "test": ds.select([3])}) if as_dict else ds).save_to_disk(str(folder))
    assert detect_format(folder) == "hf_datasets"
    result = run(folder)
    assert result.report.rows_kept == 20
    if as_dict:
        assert result.report.split_method == "given"
        assert result.report.test_dialogues == 1


def test_format_override_skips_detection(write):
    path = write("looks_like_text.txt", lvh_csv([lvh_record(1)]))
    rows, rejected, info = read_dialogues(path, "llms_vs_humans")
    assert info["format"] == "llms_vs_humans" and len(rows) == 5 and rejected.empty


def test_checking_and_sniffing_a_large_file_read_only_its_head(write, monkeypatch):
    # preflight (check_source) and format detection run before ingestion reads the file: on a large file they
    # must not read it whole twice over
    from pathlib import Path

    from empathy_distill.data import readers

    records = [lvh_record(i, situation="x" * 2000) for i in range(400)]  # about 1 MB
    path = write("big.csv", lvh_csv(records).encode())
    reads = []
    real_open = Path.open

    class Counted:
        def __init__(self, handle):
            self.handle = handle

        def read(self, size=-1):
            data = self.handle.read(size)
            reads.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def counting_open(self, *args, **kwargs):
        return Counted(real_open(self, *args, **kwargs))

    monkeypatch.setattr(Path, "open", counting_open)
    readers.check_source(path, "auto")
    readers.check_source(path, "llms_vs_humans")
    assert detect_format(path) == "llms_vs_humans"
    assert reads and max(reads) <= 64 * 1024 < path.stat().st_size
    monkeypatch.undo()
    blank_head = write("blank_head.csv", b" " * (64 * 1024) + lvh_csv([lvh_record(1)]).encode())
    readers.check_source(blank_head, "llms_vs_humans")  # blank so far is not empty: the rest is read
    with pytest.raises(readers.InputError, match="file is empty"):
        readers.check_source(write("blank.csv", b" \n" * 40_000), "llms_vs_humans")


@pytest.mark.parametrize("fmt", ["llms_vs_humans", "jsonl"])
def test_a_reader_streams_the_file_instead_of_holding_copies_of_it(write, fmt):
    # reading the whole file into bytes, its text and a StringIO of it held up to six times the file at once
    # (1.9 GB of peak RSS for a 190 MB file of 100k dialogues); streamed, what is held is the rows themselves
    # (measured: 1.2x the file for the CSV, 1.0x for JSON lines; 6.2x and 2.0x before)
    import tracemalloc

    from empathy_distill.data.readers import READERS

    records = [lvh_record(i, situation=f"{i} " + "a long situation " * 1000) for i in range(300)]
    if fmt == "jsonl":
        text = "\n".join(
            json.dumps({"dialogue_id": r["dialog_id"], "situation": r["situation"], "utterance": "u", "response": "r"})
            for r in records
        )
    else:
        text = lvh_csv(records)
    path = write(f"long.{fmt}", text.encode())
    tracemalloc.start()
    try:
        result = READERS[fmt](path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len({row["dialogue_id"] for row in result.rows}) == 300 and not result.quarantine
    assert peak < 1.6 * path.stat().st_size, f"peak {peak / path.stat().st_size:.1f}x the file"
