"""The serving engine's continuous batching on random-weight stand-ins of six families.

Greedy replies equal ``generate()``'s for the same chat alone, while chats of different lengths
join and leave one running batch; a chat that arrives while others are mid-reply gets its first
token at the next step, not when they end; a cancelled chat leaves within one decoding step;
rows of different adapters share a batch and each gets its own adapter's reply.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from empathy_distill.config import GenerationSettings, StudentConfig
from empathy_distill.serving.engine import CANCELLED, Engine
from empathy_distill.training.generate import generate
from empathy_distill.training.student import load_student
from tests.families import BY_NAME, FAMILIES, build_family

SYSTEM = "Reply kindly."
USERS = [
    "My dog died.",
    "I lost my job today and I do not know what to tell my family tonight.",
    "Hi.",
    "We moved to a new town and the kids have no friends yet; they cry every night before sleep.",
    "I passed!",
    "My sister will not talk to me since the wedding.",
    "Work is too much lately, every single day, and I cannot sleep, eat or rest at all.",
    "Thanks for listening.",
    "My grandmother is in hospital.",
    "I got the part in the play!",
]
CHATS = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": u}] for u in USERS]


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine-families")
    made = {}

    def get(name: str):
        if name not in made:
            folder = str(build_family(BY_NAME[name], root / name))
            made[name] = load_student(folder, StudentConfig(model=folder, dtype="float32"))
        return made[name]

    return get


def never_stops(fmt):
    """The format with a stop id no model here emits: replies run to their ``max_new_tokens``."""
    return dataclasses.replace(fmt, stop_ids=(10**6,))


@pytest.mark.parametrize("family", [pytest.param(f.name, id=f.name) for f in FAMILIES])
def test_greedy_replies_equal_generate_alone_while_chats_join_and_leave(family, students):
    tokenizer, model, fmt = students(family)
    settings = GenerationSettings(max_new_tokens=24, no_repeat_ngram_size=3)
    engine = Engine(model, tokenizer, fmt, max_batch=4)  # 10 chats through 4 rows: they join as others leave
    try:
        lengths = [12, 24, 5, 24, 1, 18, 24, 9, 24, 3]  # rows end at different steps
        requests = [engine.submit(c, n, settings.model_dump()) for c, n in zip(CHATS, lengths)]
        served = [r.future.result(120) for r in requests]
        cut = [
            generate(model, tokenizer, [c], settings.model_copy(update={"max_new_tokens": n}), fmt=fmt, progress=False)[
                0
            ]
            for c, n in zip(CHATS, lengths)
        ]
    finally:
        engine.close()
    assert served == cut
    assert engine.counts["max_running"] == 4 and engine.counts["prefills"] == len(CHATS)
    assert any(r.finish_reason == "length" for r in served)  # lengths were what ended most rows


def test_a_late_chat_gets_its_first_token_at_the_next_step_not_when_the_others_end(students):
    tokenizer, model, fmt = students(FAMILIES[0].name)
    engine = Engine(model, tokenizer, never_stops(fmt), max_batch=8)
    slow = engine._forward
    engine._forward = lambda *a, **k: (time.sleep(0.01), slow(*a, **k))[1]  # steps long enough to see
    settings = {"max_new_tokens": 80}
    try:
        early = [engine.submit(c, 80, settings) for c in CHATS[:7]]
        while engine.steps < 10:
            time.sleep(0.005)
        first = threading.Event()
        seen: dict[str, int] = {}

        def heard(kind, value):
            if kind == "delta" and not first.is_set():
                seen["steps"], seen["running"] = engine.steps, sum(not r.future.done() for r in early)
                first.set()

        asked_at = engine.steps
        late = engine.submit(CHATS[7], 8, settings, listener=heard)
        assert first.wait(30) and late.future.result(30).completion_tokens == 8
        for r in early:
            assert r.future.result(60).completion_tokens == 80
    finally:
        engine.close()
    assert seen["running"] == 7  # the others were mid-reply when the late chat's first text came
    assert seen["steps"] - asked_at <= 3  # one step to join, its first delta within a step or two of text


def test_a_cancelled_chat_leaves_the_batch_within_one_step(students):
    tokenizer, model, fmt = students(FAMILIES[0].name)
    engine = Engine(model, tokenizer, never_stops(fmt), max_batch=8)
    slow = engine._forward
    engine._forward = lambda *a, **k: (time.sleep(0.01), slow(*a, **k))[1]
    try:
        other = engine.submit(CHATS[1], 60, {})
        deltas = []
        gone = engine.submit(CHATS[0], 200, {}, listener=lambda kind, value: deltas.append(kind))
        while len(deltas) < 3:
            time.sleep(0.001)
        gone.cancel()
        made = len(gone.out)
        with pytest.raises(type(CANCELLED)) as caught:
            gone.future.result(30)
        assert other.future.result(30).completion_tokens == 60  # the rest of the batch goes on
    finally:
        engine.close()
    assert caught.value.status == 499
    assert len(gone.out) - made <= 1 and engine.cancels[-1]["steps_between"] <= 1
    assert engine.counts["cancelled"] == 1 and deltas[-1] == "error"


def test_a_failed_prefill_fails_its_own_chats_at_once_and_the_running_ones_go_on(students):
    """A prefill that raises (a kernel, an out-of-memory) answers its chats with a 500 instead of leaving them waiting
    for ever; chats already decoding finish their replies."""
    tokenizer, model, fmt = students(FAMILIES[0].name)
    engine = Engine(model, tokenizer, never_stops(fmt), max_batch=8)
    real = engine._forward

    def forward(adapters, **inputs):
        if inputs["input_ids"].shape[1] > 1 and engine.rows:  # a prefill while another chat decodes
            raise RuntimeError("out of memory")
        time.sleep(0.005)
        return real(adapters, **inputs)

    engine._forward = forward
    try:
        running = engine.submit(CHATS[1], 40, {})
        while not engine.rows:
            time.sleep(0.001)
        failed = engine.submit(CHATS[0], 8, {})
        with pytest.raises(type(CANCELLED)) as caught:
            failed.future.result(30)
        assert running.future.result(30).completion_tokens == 40
    finally:
        engine.close()
    assert caught.value.status == 500 and engine.counts["failed"] == 1


def test_rows_of_different_adapters_share_a_batch_and_get_their_own_replies(students):
    from peft import LoraConfig, get_peft_model

    tokenizer, model, fmt = students(FAMILIES[0].name)
    lora = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)  # non-zero: adapters differ
    peft = get_peft_model(model, lora, adapter_name="warm")
    peft.add_adapter("calm", LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False, lora_alpha=32))
    peft.eval()
    settings = GenerationSettings(max_new_tokens=16)
    try:
        expected = {}
        for name in ("warm", "calm"):
            peft.set_adapter(name)
            expected[name] = [generate(peft, tokenizer, [c], settings, fmt=fmt, progress=False)[0] for c in CHATS[:6]]
        assert [r.text for r in expected["warm"]] != [r.text for r in expected["calm"]]
        engine = Engine(peft, tokenizer, fmt, max_batch=12)
        names = ["warm", "calm"] * 6
        requests = [engine.submit(c, None, settings.model_dump(), adapter=n) for c, n in zip(CHATS[:6] * 2, names)]
        served = [r.future.result(120) for r in requests]
        engine.close()
    finally:
        peft.unload()
    for i, (reply, name) in enumerate(zip(served, names)):
        assert reply == expected[name][i % 6], (i, name)


def test_one_adapter_alone_is_merged_and_a_second_one_unmerges_it(students):
    """merge=True: while the model holds one adapter its product is in the base weights (the replies stay the
    unmerged ones'); loading a second adapter unmerges it before the next step, the base's weights come back, and
    each adapter's rows get their own replies again."""
    import torch
    from peft import LoraConfig, get_peft_model

    tokenizer, model, fmt = students(FAMILIES[0].name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lora = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    peft = get_peft_model(model, lora, adapter_name="warm")
    peft.eval()
    settings = GenerationSettings(max_new_tokens=16)
    engine = Engine(peft, tokenizer, fmt, max_batch=8, merge=True)
    try:
        warm = [generate(peft, tokenizer, [c], settings, fmt=fmt, progress=False)[0] for c in CHATS[:4]]
        served = [engine.submit(c, None, settings.model_dump(), adapter="warm") for c in CHATS[:4]]
        assert [r.future.result(120) for r in served] == warm
        assert engine.stats()["merged"] == ["warm"] and engine.merges == 1
        with engine.lock:  # as the pool loads a version
            peft.add_adapter("calm", LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
        calm = engine.submit(CHATS[0], None, settings.model_dump(), adapter="calm").future.result(120)
        assert engine.stats()["merged"] == []
        again = [engine.submit(c, None, settings.model_dump(), adapter="warm") for c in CHATS[:4]]
        assert [r.future.result(120) for r in again] == warm
        peft.set_adapter("calm")
        assert calm == generate(peft, tokenizer, [CHATS[0]], settings, fmt=fmt, progress=False)[0]
    finally:
        engine.close()
        peft.unload()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=1e-6, msg=key)
