"""The bad-input corpus: each case ends in an exact one-line error (exit 2) or an exact
quarantine reason, rows in = rows kept + rows quarantined, and no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from tests.conftest import LVH_HEADER, lvh_csv, lvh_record


def ingest_cli(capsys, data: Path, out: Path, *extra: str) -> tuple[int, str]:
    code = main(["ingest", "--data", str(data), "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err.strip()


def quarantine_of(out: Path) -> tuple[list[dict], dict]:
    lines = (out / "quarantine.jsonl").read_text().splitlines()
    report = json.loads((out / "report.json").read_text())
    assert report["rows_kept"] + report["rows_quarantined"] == report["responses_read"]
    return [json.loads(x) for x in lines], report


# ---------------------------------------------------------------- whole-file errors

ERRORS = {
    "missing_column": (
        lvh_csv([lvh_record(1)], header=[h for h in LVH_HEADER if h != "situation"]),
        "line 1, column 'situation': missing required column 'situation' for format llms_vs_humans",
    ),
    "empty_file": (b"", "file is empty"),
    "whitespace_only": (b"\n\n  \n", "file is empty"),
    "header_only": (lvh_csv([]), "no rows kept (0 read, 0 quarantined: the file has no data rows)"),
    "binary_garbage": (bytes(range(256)) * 40, "not a text file (binary content in the first 8 KiB)"),
    "wrong_delimiter": (
        lvh_csv([lvh_record(1)]).replace(",", ";"),
        "the file looks semicolon-separated, expected commas",
    ),
    "unknown_columns": ("a,b,c\n1,2,3\n", "cannot detect the format"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_unusable_file_is_one_line_error(case, write, tmp_path, capsys):
    content, expected = ERRORS[case]
    path = write(f"{case}.csv", content)
    code, err = ingest_cli(capsys, path, tmp_path / "out")
    assert code == 2
    assert err.startswith(f"error: {path}")
    assert expected in err
    assert len(err.splitlines()) == 1


def test_missing_file(tmp_path, capsys):
    code, err = ingest_cli(capsys, tmp_path / "nope.csv", tmp_path / "out")
    assert (code, err) == (2, f"error: {tmp_path / 'nope.csv'}: file not found")


def test_plain_folder_is_not_a_dataset(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    code, err = ingest_cli(capsys, tmp_path / "folder", tmp_path / "out")
    assert code == 2 and "not a datasets save_to_disk folder" in err


def test_wrong_delimiter_with_forced_format_names_column(write, tmp_path, capsys):
    path = write("semi.csv", lvh_csv([lvh_record(1)]).replace(",", ";"))
    code, err = ingest_cli(capsys, path, tmp_path / "out", "--format", "llms_vs_humans")
    assert code == 2
    assert "missing required column 'dialog_id'" in err and "semicolon-separated" in err


def test_all_rows_bad_still_writes_quarantine(write, tmp_path, capsys):
    path = write("bad.csv", lvh_csv([lvh_record(1, situation=""), lvh_record(2, situation="  ")]))
    code, err = ingest_cli(capsys, path, tmp_path / "out")
    assert code == 2
    assert err == f"error: {path}: no rows kept (10 read, 10 quarantined: empty_text=10)"
    rows, report = quarantine_of(tmp_path / "out")
    assert {r["reason"] for r in rows} == {"empty_text"} and report["rows_kept"] == 0


# ------------------------------------------------------------ row-level quarantine

GOOD = [lvh_record(i) for i in range(1, 4)]  # 15 good rows around each bad record

QUARANTINE = {
    # name: (file bytes, {(dialogue_id, source): reason}, field)
    "rating_7": (lvh_csv([*GOOD, lvh_record(9, rating_human="7")]), {("d9", "human"): "bad_rating"}, "rating_raw"),
    "rating_word": (
        lvh_csv([*GOOD, lvh_record(9, rating_gemini_empathy="good")]),
        {("d9", "gemini"): "bad_rating"},
        "rating_raw",
    ),
    "empty_response": (
        lvh_csv([*GOOD, lvh_record(9, response_llama_empathy="   ")]),
        {("d9", "llama"): "empty_text"},
        "response",
    ),
    "nul_byte": (
        lvh_csv([*GOOD, lvh_record(9, response_human="I am \x00 here")]),
        {("d9", "human"): "nul_byte"},
        "response",
    ),
    "control_char": (
        lvh_csv([*GOOD, lvh_record(9, response_human="bell \x07 sound")]),
        {("d9", "human"): "control_char"},
        "response",
    ),
    "formula": (
        lvh_csv([*GOOD, lvh_record(9, response_mixtral_empathy='=HYPERLINK("http://x.example","click")')]),
        {("d9", "mixtral"): "formula"},
        "response",
    ),
    "huge_utterance": (
        lvh_csv([*GOOD, lvh_record(9, speaker_uttr="a" * 1_048_576)]),
        {("d9", s): "too_long" for s in ("human", "chatgpt", "llama", "gemini", "mixtral")},
        "utterance",
    ),
    "duplicate_id": (
        lvh_csv([*GOOD, lvh_record(1)]),
        {("d1", s): "duplicate" for s in ("human", "chatgpt", "llama", "gemini", "mixtral")},
        None,
    ),
    "non_utf8": (
        lvh_csv([*GOOD]).encode()
        + lvh_csv([lvh_record(9, response_human="caf\x00")]).split("\n", 1)[1].encode().replace(b"\x00", b"\xe9"),
        {("d9", "human"): "invalid_utf8"},
        "response",
    ),
}


@pytest.mark.parametrize("case", sorted(QUARANTINE))
def test_bad_row_is_quarantined_with_reason(case, write, tmp_path, capsys):
    content, expected, field = QUARANTINE[case]
    path = write(f"{case}.csv", content)
    code, err = ingest_cli(capsys, path, tmp_path / "out")
    assert code == 0, err
    rows, report = quarantine_of(tmp_path / "out")
    got = {(r["dialogue_id"], r["source"]): r["reason"] for r in rows}
    assert got == expected
    assert all(r["field"] == field for r in rows)
    assert all(r["record"] is not None and r["detail"] for r in rows)
    assert report["rows_quarantined"] == len(expected)
    assert report["responses_read"] == 20
    assert report["rows_kept"] == 20 - len(expected)


def test_truncated_last_line(write, tmp_path, capsys):
    text = lvh_csv(GOOD + [lvh_record(9)])
    cut = text[: text.rindex("d9") + 40]  # ends inside the quoted situation
    path = write("cut.csv", cut)
    code, _ = ingest_cli(capsys, path, tmp_path / "out")
    assert code == 0
    rows, report = quarantine_of(tmp_path / "out")
    assert [(r["record"], r["reason"]) for r in rows] == [(5, "field_count")]
    assert "the file may be truncated" in rows[0]["detail"]
    assert (report["rows_kept"], report["rows_quarantined"], report["responses_read"]) == (15, 1, 16)


def test_jsonl_bad_lines(write, tmp_path, capsys):
    good = {
        "dialogue_id": "a",
        "emotion": "sad",
        "situation": "s",
        "utterance": "u",
        "source": "human",
        "response": "r",
        "rating": 2,
    }
    lines = [
        json.dumps(good),
        '{"dialogue_id": "b", "situation": ',  # truncated JSON
        json.dumps({k: v for k, v in good.items() if k != "utterance"} | {"dialogue_id": "c"}),
        json.dumps(good | {"dialogue_id": "d", "split": "dev"}),
        "[1, 2]",
    ]
    path = write("bad.jsonl", "\n".join(lines))
    code, _ = ingest_cli(capsys, path, tmp_path / "out")
    assert code == 0
    rows, report = quarantine_of(tmp_path / "out")
    assert [(r["record"], r["reason"]) for r in sorted(rows, key=lambda r: r["record"])] == [
        (2, "invalid_json"),
        (3, "missing_field"),
        (4, "bad_split"),
        (5, "invalid_json"),
    ]
    assert report["rows_kept"] == 1


def test_subprocess_prints_no_traceback(write, tmp_path):
    path = write("empty.csv", b"")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "ingest", "--data", str(path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {path}: file is empty"
    assert proc.stdout == ""
