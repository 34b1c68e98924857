"""Ingestion fuzzed: valid CSV and JSONL files mutated at random (truncation, byte flips, wrong
delimiters, huge fields, mixed encodings, duplicate headers). Whatever the mutation: no traceback;
either rows kept + rows quarantined = responses read, or one ``error:`` line with exit code 2 and
no output file written."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main
from empathy_distill.config import DataConfig, ValidationConfig
from empathy_distill.data.ingest import ingest
from tests.conftest import SAMPLE_DATA

CSV = SAMPLE_DATA.read_bytes()


def jsonl_sample() -> bytes:
    table = ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table
    fields = ["dialogue_id", "situation", "utterance", "source", "response", "rating"]
    rows = table[fields].head(60).to_dict(orient="records")
    return "\n".join(json.dumps({k: (None if v != v else v) for k, v in r.items()}, default=int) for r in rows).encode()


JSONL = jsonl_sample()


def truncate(data: bytes, draw) -> bytes:
    return data[: draw(st.integers(0, len(data)))]


def flip_bytes(data: bytes, draw) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 40))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out)


def wrong_delimiter(data: bytes, draw) -> bytes:
    return data.replace(b",", draw(st.sampled_from([b";", b"\t", b"|", b""])))


def huge_field(data: bytes, draw) -> bytes:
    lines = data.split(b"\n")
    i = draw(st.integers(1, max(len(lines) - 1, 1))) % len(lines)
    lines[i] = lines[i] + b"x" * draw(st.sampled_from([10_000, 200_000, 2_000_000]))
    return b"\n".join(lines)


def mixed_encoding(data: bytes, draw) -> bytes:
    text = data.decode("utf-8", errors="replace")
    cut = draw(st.integers(0, len(text)))
    encoding = draw(st.sampled_from(["latin-1", "utf-16", "cp1252"]))
    return text[:cut].encode("utf-8") + text[cut:].encode(encoding, errors="replace")


def duplicate_header(data: bytes, draw) -> bytes:
    head, _, rest = data.partition(b"\n")
    columns = head.split(b",")
    j = draw(st.integers(0, len(columns) - 1))
    return b",".join([*columns, columns[j]]) + b"\n" + rest


MUTATIONS = [truncate, flip_bytes, wrong_delimiter, huge_field, mixed_encoding, duplicate_header]


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    name, data = draw(st.sampled_from([("dialogues.csv", CSV), ("dialogues.jsonl", JSONL)]))
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        if data:
            data = mutation(data, draw)
    return name, data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_a_mutated_file_is_quarantined_row_by_row_or_refused_in_one_line(case):
    name, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / name, Path(tmp) / "out"
        path.write_bytes(data)
        with pytest.MonkeyPatch.context() as mp:
            errors: list[str] = []
            mp.setattr("sys.stderr", _Lines(errors))
            mp.setattr("sys.stdout", _Lines([]))
            code = main(["ingest", "--data", str(path), "--out", str(out)])  # anything else escapes as a traceback
        written = sorted(p.name for p in out.glob("*")) if out.exists() else []
        if code == 0:
            report = json.loads((out / "report.json").read_text())
            assert report["rows_kept"] + report["rows_quarantined"] == report["responses_read"]
            assert written == ["dialogues.parquet", "quarantine.jsonl", "report.json"]
        else:
            assert code == 2, errors
            last = "".join(errors).strip().splitlines()
            assert last[-1].startswith("error: ") and "Traceback" not in "".join(errors)
            # refused before reading rows: nothing; refused for keeping none: the complete set, with the reasons
            assert written in ([], ["dialogues.parquet", "quarantine.jsonl", "report.json"]), written


class _Lines:
    """A stand-in for stdout/stderr that keeps what is written (the CLI prints, it does not log here)."""

    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def write(self, text: str) -> int:
        self.sink.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
