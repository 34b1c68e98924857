"""The untouched base: the tiny student's warm-up never reads a training target or a test dialogue.

Each check recomputes the forbidden texts itself (targets of the SFT and DPO sets, every text of
a test dialogue, human and top-rated replies) rather than trusting the builder's own list."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empathy_distill.config import BootstrapConfig, DataConfig, StudentConfig, ValidationConfig
from empathy_distill.data.ingest import ingest
from empathy_distill.stages import bootstrap_training_sets
from empathy_distill.training import student as student_module
from empathy_distill.training.warmup import _containing, build_warmup_corpus, normalize
from tests.conftest import SAMPLE_DATA


def forbidden(table: pd.DataFrame, sets) -> tuple[set[str], set[str]]:
    """(training targets, test-dialogue texts), normalized, computed here independently of the builder."""
    targets = {normalize(t) for t in [*sets.sft["response"], *sets.dpo["chosen"], *sets.dpo["rejected"]]}
    test = table[table["split"] == "test"]
    test_texts = {normalize(t) for col in ("situation", "utterance", "response") for t in test[col]}
    return targets, test_texts


def assert_disjoint(chats: list[str], units: list[str], table: pd.DataFrame, sets) -> None:
    targets, test_texts = forbidden(table, sets)
    assert targets and test_texts
    unit_set = {normalize(u) for u in units}
    assert not unit_set & targets, "a training target is in the warm-up"
    assert not unit_set & test_texts, "a test-dialogue text is in the warm-up"
    joined = normalize(" \n ".join(chats))
    for text in targets | test_texts:
        if len(text.split()) >= 4:
            assert text not in joined, f"warm-up contains {text!r}"
    human_or_top = table[(table["source"] == "human") | (table["rating"] >= 3)]
    assert not unit_set & {normalize(r) for r in human_or_top["response"]}  # no human reply, no reply rated 3


def sample_world():
    table = ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table
    return table, bootstrap_training_sets(table, BootstrapConfig())


def test_sample_warmup_is_disjoint_from_targets_and_test():
    table, sets = sample_world()
    corpus = build_warmup_corpus(table, [sets.sft, sets.dpo])
    assert_disjoint(corpus.chats, corpus.units, table, sets)
    # what it does hold: train situations, speaker turns and model replies rated 1 or 2
    train = table[table["split"] == "train"]
    low = train[(train["source"] != "human") & (train["rating"] < 3)]
    assert set(corpus.units) <= set(train["situation"].str.strip()) | set(train["utterance"].str.strip()) | set(
        low["response"].str.strip()
    )
    assert corpus.sources["replies_rated_below_top"] > 0
    assert len(corpus.chats) >= 0.9 * train["dialogue_id"].nunique()


def test_a_planted_overlap_is_dropped():
    table, sets = sample_world()
    train_situation = table[table["split"] == "train"]["situation"].iloc[0]
    # a teacher target that happens to repeat a train situation word for word
    sft = sets.sft.copy()
    sft.loc[0, "response"] = f"  {train_situation.upper()} "
    corpus = build_warmup_corpus(table, [sft, sets.dpo])
    assert normalize(train_situation) not in {normalize(u) for u in corpus.units}
    assert corpus.dropped >= 1


def capture_warmup(monkeypatch, tmp_path) -> dict:
    """The texts and chats the student factory would warm up on (the build itself replaced)."""
    seen = {}

    def fake_build(texts, chats, cfg):
        seen.update(texts=texts, chats=chats)
        return tmp_path, {"model": "tiny"}

    monkeypatch.setattr(student_module, "build_tiny_student", fake_build)
    return seen


def test_the_student_factory_warms_up_on_that_corpus_only(monkeypatch, tmp_path):
    table, sets = sample_world()
    seen = capture_warmup(monkeypatch, tmp_path)
    _, info = student_module.prepare_tiny_student(table, [sets.sft, sets.dpo], StudentConfig(cache_dir=str(tmp_path)))
    assert_disjoint(seen["chats"], seen["texts"], table, sets)
    assert info["warmup_chats"] == len(seen["chats"]) > 0


@pytest.mark.real_data
def test_real_file_warmup_is_disjoint(real_data):
    table = ingest(real_data, DataConfig(path=str(real_data)), ValidationConfig()).table
    sets = bootstrap_training_sets(table, BootstrapConfig())
    corpus = build_warmup_corpus(table, [sets.sft, sets.dpo])
    assert_disjoint(corpus.chats, corpus.units, table, sets)
    assert len(corpus.chats) > 1500  # most of the 1,750 train dialogues still contribute


def test_warmup_replies_none_reads_no_listener_reply(monkeypatch, tmp_path):
    """student.tiny.warmup_replies=none: the factory's corpus holds situations and speaker turns, no reply at all."""
    table, sets = sample_world()
    seen = capture_warmup(monkeypatch, tmp_path)
    cfg = StudentConfig(cache_dir=str(tmp_path), tiny={"warmup_replies": "none"})
    student_module.prepare_tiny_student(table, [sets.sft, sets.dpo], cfg)
    assert_disjoint(seen["chats"], seen["texts"], table, sets)
    train = table[table["split"] == "train"]
    contexts = set(train["situation"].str.strip()) | set(train["utterance"].str.strip())
    assert seen["texts"] and set(seen["texts"]) <= contexts
    replies = {normalize(r) for r in table["response"]}
    assert not {normalize(u) for u in seen["texts"]} & replies
    # the default still reads model replies rated below the top rating
    student_module.prepare_tiny_student(table, [sets.sft, sets.dpo], StudentConfig(cache_dir=str(tmp_path)))
    assert not set(seen["texts"]) <= contexts


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(["a", "b", "ab", "ba", "c"]), min_size=1, max_size=9), min_size=1, max_size=8),
    st.lists(st.lists(st.sampled_from(["a", "b", "ab", "ba", "c"]), min_size=1, max_size=6), min_size=1, max_size=6),
)
def test_the_indexed_search_finds_exactly_what_a_plain_search_finds(units, needles):
    # the word-pair index must agree with `needle in unit` on every unit, needles cut mid-word included ("b a b"
    # inside "ab a ba"), and short needles (below 4 words) too
    units = [" ".join(u) for u in units]
    needles = [" ".join(n) for n in needles]
    expected = {i for i, unit in enumerate(units) if any(n in unit for n in needles)}
    assert _containing(units, needles) == expected
