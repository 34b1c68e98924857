"""Templates render for every strategy, sequential is a multi-turn chat, and the parser on saved replies."""

from __future__ import annotations

import json
import string

import pytest

from empathy_distill.prompts import (
    DIMENSIONS,
    STRATEGIES,
    load_template,
    method_prompt_hash,
    prompt_hash,
    render,
    strategy_turns,
    templates_for,
)
from empathy_distill.teacher.parse import parse_reply
from tests.conftest import REPO

FIELDS = {
    "situation": "My bike was stolen.",
    "utterance": "I rode it every day.",
    "response": "That sucks.",
    "target_words": 28,
    "max_words": 97,
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_renders_and_names_the_dimensions(strategy):
    system = load_template("system")
    for dim in DIMENSIONS:
        assert dim in system
    for i, turn in enumerate(strategy_turns(strategy)):
        text = render(turn, **FIELDS)
        assert "${" not in text
        assert "28 words" in text and "97" in text
        if i == 0:
            assert "My bike was stolen." in text and "That sucks." in text
    assert "I rode it every day." in render("initial", **FIELDS)


def test_placeholders_are_only_the_known_fields():
    for name in ["system", "initial", *(t for s in STRATEGIES for t in strategy_turns(s))]:
        ids = {m.group("braced") for m in string.Template.pattern.finditer(load_template(name)) if m.group("braced")}
        assert ids <= set(FIELDS), (name, ids)


def test_sequential_is_three_turns_in_dimension_order():
    turns = strategy_turns("sequential")
    assert [t.split("_")[-1] for t in turns] == ["cognitive", "affective", "compassionate"]


def test_prompt_hash_tracks_the_templates_in_use():
    hashes = {s: method_prompt_hash("improve_llm", s) for s in STRATEGIES}
    assert len(set(hashes.values())) == len(STRATEGIES)
    assert method_prompt_hash("improve_human", "naive") != hashes["naive"]  # no initial template
    assert prompt_hash(templates_for("naive")) == prompt_hash(templates_for("naive"))
    with pytest.raises(KeyError):
        templates_for("kindness")


SAVED = json.loads((REPO / "tests" / "fixtures" / "teacher_replies.json").read_text())


@pytest.mark.parametrize("case", SAVED, ids=[str(i) for i in range(len(SAVED))])
def test_parser_on_saved_replies(case):
    parsed = parse_reply(case["raw"], case.get("max_words", 97), expect_dimension=case.get("expect_dimension", False))
    assert parsed.valid is case["valid"]
    assert parsed.raw == case["raw"]
    if "text" in case:
        assert parsed.text == case["text"]
    if "reason" in case:
        assert parsed.reason == case["reason"]
    if "dimension" in case:
        assert parsed.dimension == case["dimension"]


def test_a_reply_that_writes_the_prompts_framing_back_keeps_only_the_reply():
    """Seen from SmolLM2-135M as teacher: the rewrite comes back behind the prompt's own "A listener replied:"."""
    parsed = parse_reply('The listener replied: "That sounds so hard, and I am here if you want to talk."')
    assert parsed.valid and parsed.text == "That sounds so hard, and I am here if you want to talk."
    assert parse_reply('A listener replied: "I hear you."').text == "I hear you."


def test_a_reply_that_echoes_the_instructions_is_invalid_and_one_that_repeats_the_dialogue_is_not():
    """Seen from SmolLM2-135M in the sequential strategy: the plan of the rounds written back as the "rewrite"."""
    from empathy_distill.prompts import load_template
    from empathy_distill.teacher.parse import instruction_ngrams

    grams = instruction_ngrams(load_template("sequential_1_cognitive"))
    echo = parse_reply("Our chat will improve this reply in three rounds, one step at a time.", instructions=grams)
    assert not echo.valid and echo.reason == "echoes_prompt"
    # the template's fields are the dialogue's words: repeating them is no echo
    fine = parse_reply(
        "I know you said your exam went badly and you feel awful; that is a heavy day.", instructions=grams
    )
    assert fine.valid
    assert parse_reply("Our chat will improve this reply in three rounds, one step at a time.").valid  # none given
