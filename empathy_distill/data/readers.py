"""Readers: each turns one input format into long rows, before any validation.

Every reader returns a :class:`ReadResult`. A record that cannot even be parsed
(a CSV row with the wrong number of fields, a JSONL line that is not JSON) goes to
``quarantine`` with its line number and a reason; nothing is dropped silently.
A file that cannot be used at all raises :class:`~empathy_distill.errors.InputError`.

Texts are kept as written except for surrounding whitespace, CRLF line ends
(made ``\\n``) and EmpatheticDialogues' ``_comma_`` (made ``,``). Bytes that are not
UTF-8 become U+FFFD, which validation quarantines as ``invalid_utf8``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from empathy_distill.data.schema import ED_REQUIRED, LVH_RATING_PREFIX, LVH_REQUIRED, LVH_RESPONSE_PREFIX, source_name
from empathy_distill.errors import InputError

_SNIFF_BYTES = 64 * 1024
_BINARY_SAMPLE = 8 * 1024
_BINARY_RATIO = 0.10


@dataclass
class ReadResult:
    """Long rows (unvalidated) plus the records that could not be parsed."""

    fmt: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    records_read: int = 0


def reject(
    record: int | None,
    reason: str,
    detail: str,
    *,
    dialogue_id: str | None = None,
    source: str | None = None,
    field_name: str | None = None,
) -> dict[str, Any]:
    """One quarantine entry: where it came from and one reason."""
    return {
        "record": record,
        "dialogue_id": printable(dialogue_id),
        "source": printable(source),
        "field": field_name,
        "reason": reason,
        "detail": printable(detail),
    }


def printable(value: Any) -> str | None:
    """Text for messages and files; ``None`` for missing values."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return str(value)


def clean_text(value: Any, *, ed_commas: bool = False) -> str | None:
    """Strip surrounding whitespace and CRLF; ``None`` stays ``None``."""
    if value is None:
        return None
    text = str(value).replace("\r\n", "\n").replace("\r", "\n").strip()
    if ed_commas:
        text = text.replace("_comma_", ",")
    return text


def _rating_raw(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from a datasets column
        return None
    text = str(value).strip()
    return text or None


# --------------------------------------------------------------------------- files


def read_head(path: Path) -> str:
    """The file's first ``_SNIFF_BYTES`` as text (enough to sniff or check it without reading a large file;
    all of it when that much is blank): UTF-8 (BOM allowed), undecodable bytes made U+FFFD.

    Raises:
        InputError: missing, unreadable, empty or binary file.
    """
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(
            path, "is a folder, not a file (a datasets folder needs dataset_info.json or dataset_dict.json)"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(_SNIFF_BYTES)
            if len(data) == _SNIFF_BYTES and not data.strip():  # only blank so far: empty needs the rest
                data += handle.read()
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from None
    if not data.strip():
        raise InputError(path, "file is empty")
    sample = data[:_BINARY_SAMPLE].decode("utf-8", errors="replace")
    bad = sum(1 for ch in sample if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r\f"))
    if bad / max(len(sample), 1) > _BINARY_RATIO:
        raise InputError(path, "not a text file (binary content in the first 8 KiB)")
    return data.decode("utf-8-sig", errors="replace")


@contextmanager
def open_text(path: Path, newline: str = "") -> Iterator[TextIO]:
    """The file as a text stream, decoded as :func:`read_head` decodes it, after its checks on the file's head.

    A reader streams its records from here instead of holding the file's bytes, their decoded text and a
    4-bytes-a-character buffer of it at once (about 1.1 GB for a 190 MB file of 100k dialogues, mapped fresh
    from the kernel on every read: the ingest's system time per dialogue doubled from 2k to 100k).

    Raises:
        InputError: missing, unreadable, empty or binary file.
    """
    read_head(path)
    try:
        with path.open("r", encoding="utf-8-sig", errors="replace", newline=newline) as handle:
            yield handle
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from None


def _csv_records(source: str | TextIO, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) for each CSV record, header included; ``source`` is text or a stream."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(io.StringIO(source, newline="") if isinstance(source, str) else source)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # only in strict dialects; kept for safety
            raise InputError(path, f"malformed CSV: {exc}", row=start) from None
        if fields:  # blank lines carry no record
            yield start, fields
        start = reader.line_num + 1


def _delimiter_hint(header: list[str]) -> str:
    if len(header) == 1:
        for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in header[0]:
                return f" (the header is one column; the file looks {name}-separated, expected commas)"
    return ""


def _require_columns(path: Path, header: list[str], required: list[str], fmt: str) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            path,
            f"missing required column '{missing[0]}' for format {fmt}{_delimiter_hint(header)}",
            row=1,
            column=missing[0],
        )


def check_source(path: Path, fmt: str) -> None:
    """What a reader checks when it opens ``path`` (exists, a file or a datasets folder as the format needs,
    readable, text, not empty), without reading rows: a clear error before a pipeline starts.

    Raises:
        InputError: naming the path and what is wrong with it.
    """
    if fmt == "auto":
        detect_format(path)
    elif fmt == "hf_datasets":
        if not path.is_dir():
            raise InputError(path, "format hf_datasets needs a datasets save_to_disk folder")
        detect_format(path)
    else:
        read_head(path)


def detect_format(path: Path) -> str:
    """Guess the format from the content, not the file name.

    Raises:
        InputError: when no known format fits; the message lists what was found.
    """
    if path.is_dir():
        if any((path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json", "state.json")):
            return "hf_datasets"
        raise InputError(path, "is a folder but not a datasets save_to_disk folder (no dataset_info.json)")
    text = read_head(path)
    if text.lstrip().startswith("{"):
        return "jsonl"
    header = next((fields for _, fields in _csv_records(text, path)), [])
    names = {h.strip() for h in header}
    if "speaker_uttr" in names or ("dialog_id" in names and any(n.startswith(LVH_RESPONSE_PREFIX) for n in names)):
        return "llms_vs_humans"
    if {"conv_id", "utterance_idx"} <= names:
        return "empathetic_dialogues"
    shown = ", ".join(sorted(names)[:8]) or "none"
    raise InputError(
        path,
        "cannot detect the format: expected LLMs-vs-Humans columns (dialog_id, situation, speaker_uttr, "
        "response_*), EmpatheticDialogues columns (conv_id, utterance_idx, ...) or JSON lines; "
        f"found columns [{shown}]{_delimiter_hint(header)}; pass --format to choose",
        row=1,
    )


# --------------------------------------------------------------- record normalizers


def lvh_rows(rec: dict[str, Any], record: int, sources: list[str]) -> list[dict[str, Any]]:
    """Long rows from one LLMs-vs-Humans record (one row per response column)."""
    base = {
        "record": record,
        "dialogue_id": clean_text(rec.get("dialog_id")),
        "emotion": clean_text(rec.get("emotion")),
        "situation": clean_text(rec.get("situation")),
        "utterance": clean_text(rec.get("speaker_uttr")),
        "split": clean_text(rec.get("split")),
    }
    return [
        {
            **base,
            "source": source_name(suffix),
            "response": clean_text(rec.get(LVH_RESPONSE_PREFIX + suffix)),
            "rating_raw": _rating_raw(rec.get(LVH_RATING_PREFIX + suffix)),
        }
        for suffix in sources
    ]


def lvh_sources(columns: list[str]) -> list[str]:
    """Response column suffixes, in file order (``human``, ``chatgpt_empathy``, ...)."""
    return [c[len(LVH_RESPONSE_PREFIX) :] for c in columns if c.startswith(LVH_RESPONSE_PREFIX)]


_JSONL_DIALOGUE_KEYS = ("dialogue_id", "situation", "utterance")


def jsonl_rows(obj: Any, record: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Long rows from one object of the JSONL schema (nested or flat); see docs/data.md."""
    if not isinstance(obj, dict):
        return [], [reject(record, "invalid_json", f"line {record} is a JSON {type(obj).__name__}, not an object")]
    dialogue_id = clean_text(obj.get("dialogue_id"))
    for key in _JSONL_DIALOGUE_KEYS:
        if key not in obj:
            return [], [
                reject(record, "missing_field", f"key '{key}' is missing", dialogue_id=dialogue_id, field_name=key)
            ]
    base = {
        "record": record,
        "dialogue_id": dialogue_id,
        "emotion": clean_text(obj.get("emotion")),
        "situation": clean_text(obj.get("situation")),
        "utterance": clean_text(obj.get("utterance")),
        "split": clean_text(obj.get("split")),
    }
    if "responses" in obj:
        responses = obj["responses"]
        if not isinstance(responses, list) or not responses:
            return [], [
                reject(
                    record,
                    "missing_field",
                    "'responses' must be a non-empty list",
                    dialogue_id=dialogue_id,
                    field_name="responses",
                )
            ]
    elif "response" in obj:
        responses = [obj]
    else:
        return [], [
            reject(
                record,
                "missing_field",
                "neither 'responses' nor 'response' is present",
                dialogue_id=dialogue_id,
                field_name="responses",
            )
        ]
    rows, rejects = [], []
    for i, resp in enumerate(responses):
        if not isinstance(resp, dict) or "response" not in resp:
            rejects.append(
                reject(
                    record,
                    "missing_field",
                    f"responses[{i}] has no 'response'",
                    dialogue_id=dialogue_id,
                    field_name="response",
                )
            )
            continue
        rows.append(
            {
                **base,
                "source": clean_text(resp.get("source")) or "unknown",
                "response": clean_text(resp.get("response")),
                "rating_raw": _rating_raw(resp.get("rating")),
            }
        )
    return rows, rejects


def ed_rows(records: list[tuple[int, dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pairs each speaker turn of an ED conversation with the listener's reply.

    In EmpatheticDialogues odd ``utterance_idx`` values are the speaker (the person
    the situation happened to) and even ones the listener. Turn k (odd) and turn
    k+1 become one dialogue ``<conv_id>:<k>`` with source ``human`` and no rating.
    A speaker turn with no reply is quarantined as ``unpaired_turn``.
    """
    convs: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for record, rec in records:
        conv_id = clean_text(rec.get("conv_id")) or ""
        try:
            idx = int(str(rec.get("utterance_idx")).strip())
        except ValueError:
            rejects.append(
                reject(
                    record,
                    "bad_turn_index",
                    f"utterance_idx {rec.get('utterance_idx')!r} is not an integer",
                    dialogue_id=conv_id,
                    field_name="utterance_idx",
                )
            )
            continue
        convs.setdefault(conv_id, []).append((idx, record, rec))
    for conv_id, turns in convs.items():
        turns.sort(key=lambda t: t[0])
        by_idx = {idx: (record, rec) for idx, record, rec in turns}
        for idx, record, rec in turns:
            if idx % 2 == 0:
                if idx - 1 not in by_idx:
                    rejects.append(
                        reject(
                            record,
                            "unpaired_turn",
                            f"listener turn {idx} has no speaker turn {idx - 1}",
                            dialogue_id=conv_id,
                            field_name="utterance",
                        )
                    )
                continue
            if idx + 1 not in by_idx:
                rejects.append(
                    reject(
                        record,
                        "unpaired_turn",
                        f"speaker turn {idx} has no listener reply",
                        dialogue_id=conv_id,
                        field_name="utterance",
                    )
                )
                continue
            reply = by_idx[idx + 1][1]
            rows.append(
                {
                    "record": record,
                    "dialogue_id": f"{conv_id}:{idx}",
                    "emotion": clean_text(rec.get("context")),
                    "situation": clean_text(rec.get("prompt"), ed_commas=True),
                    "utterance": clean_text(rec.get("utterance"), ed_commas=True),
                    "source": "human",
                    "response": clean_text(reply.get("utterance"), ed_commas=True),
                    "rating_raw": None,
                    "split": None,
                }
            )
    return rows, rejects


# --------------------------------------------------------------------- per format


def _csv_dicts(
    header: list[str], records: Iterator[tuple[int, list[str]]], min_fields: int | None, result: ReadResult
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Header-keyed records; a record with the wrong field count is quarantined.

    ``min_fields``: accept records with at least this many fields (ED has ragged rows).
    """
    want = len(header)
    for record, fields in records:
        result.records_read += 1
        if len(fields) != want and (min_fields is None or len(fields) < min_fields):
            hint = " (the file may be truncated)" if len(fields) < want else ""
            result.quarantine.append(
                reject(
                    record,
                    "field_count",
                    f"expected {want} fields, found {len(fields)}{hint}",
                    dialogue_id=clean_text(fields[0]) if fields else None,
                )
            )
            continue
        yield record, dict(zip(header, fields))


def read_llms_vs_humans(path: Path) -> ReadResult:
    """The LLMs-vs-Humans CSV: one row per dialogue, ``response_X``/``rating_X`` pairs."""
    result = ReadResult(fmt="llms_vs_humans")
    with open_text(path) as handle:
        records = _csv_records(handle, path)
        header = [h.strip() for h in next(records, (1, []))[1]]
        _require_columns(path, header, LVH_REQUIRED, result.fmt)
        sources = lvh_sources(header)
        if not sources:
            raise InputError(path, "no response_* column for format llms_vs_humans", row=1, column="response_*")
        for record, rec in _csv_dicts(header, records, None, result):
            result.rows.extend(lvh_rows(rec, record, sources))
    return result


def read_empathetic_dialogues(path: Path) -> ReadResult:
    """The EmpatheticDialogues release CSV (unquoted, commas written ``_comma_``).

    The release has rows with extra trailing fields; the first six are what we read.
    """
    result = ReadResult(fmt="empathetic_dialogues")
    with open_text(path) as handle:
        records = _csv_records(handle, path)
        header = [h.strip() for h in next(records, (1, []))[1]]
        _require_columns(path, header, ED_REQUIRED, result.fmt)
        width = max(header.index(c) for c in ED_REQUIRED) + 1
        dicts = list(_csv_dicts(header, records, width, result))
    rows, rejects = ed_rows(dicts)
    result.rows.extend(rows)
    result.quarantine.extend(rejects)
    return result


def read_jsonl(path: Path) -> ReadResult:
    """JSON lines, one dialogue (nested ``responses``) or one response (flat) per line."""
    result = ReadResult(fmt="jsonl")
    with open_text(path, newline="\n") as handle:  # lines end at "\n" only, as before; a "\r" stays in its line
        for lineno, ending in enumerate(handle, start=1):
            line = ending.removesuffix("\n")  # a decode error's column and line are the line's own
            if not line.strip():
                continue
            result.records_read += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                result.quarantine.append(
                    reject(lineno, "invalid_json", f"not valid JSON: {exc.msg} at column {exc.colno}")
                )
                continue
            rows, rejects = jsonl_rows(obj, lineno)
            result.rows.extend(rows)
            result.quarantine.extend(rejects)
    return result


def read_hf_datasets(path: Path) -> ReadResult:
    """A folder written by ``datasets.Dataset(Dict).save_to_disk``.

    Columns may follow any of the other layouts. For a ``DatasetDict`` the split
    name becomes the row's split where it is ``train`` or ``test``. Record numbers
    count rows across splits in order, starting at 1.
    """
    from datasets import Dataset, DatasetDict, load_from_disk

    result = ReadResult(fmt="hf_datasets")
    try:
        loaded = load_from_disk(str(path))
    except Exception as exc:  # datasets raises several types for a bad folder
        raise InputError(path, f"cannot load datasets folder: {exc}") from None
    parts: list[tuple[str | None, Dataset]] = (
        [(name, ds) for name, ds in loaded.items()] if isinstance(loaded, DatasetDict) else [(None, loaded)]
    )
    columns = parts[0][1].column_names if parts else []
    if "speaker_uttr" in columns:
        _require_columns(path, columns, LVH_REQUIRED, "hf_datasets (LLMs-vs-Humans columns)")
    elif "conv_id" in columns:
        _require_columns(path, columns, ED_REQUIRED, "hf_datasets (EmpatheticDialogues columns)")
    record = 0
    ed_records: list[tuple[int, dict[str, Any]]] = []
    for split_name, ds in parts:
        for rec in ds:
            record += 1
            result.records_read += 1
            if split_name in ("train", "test") and not rec.get("split"):
                rec = {**rec, "split": split_name}
            if "speaker_uttr" in columns:
                result.rows.extend(lvh_rows(rec, record, lvh_sources(columns)))
            elif "conv_id" in columns:
                ed_records.append((record, rec))
            else:
                rows, rejects = jsonl_rows(rec, record)
                result.rows.extend(rows)
                result.quarantine.extend(rejects)
    if ed_records:
        rows, rejects = ed_rows(ed_records)
        result.rows.extend(rows)
        result.quarantine.extend(rejects)
    return result


READERS = {
    "llms_vs_humans": read_llms_vs_humans,
    "empathetic_dialogues": read_empathetic_dialogues,
    "jsonl": read_jsonl,
    "hf_datasets": read_hf_datasets,
}
