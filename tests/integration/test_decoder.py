"""The engine's packed decoding pass (``serving/decoder.py``) against transformers' forward.

In float32 (packed for oneDNN on a CPU) it must give ``generate()``'s greedy replies token for token on every family
it accepts (while chats of different lengths join and leave one batch, and with a merged adapter); the families it
does not know keep transformers' forward and say why; in bfloat16, with oneDNN's packed weights, its logits stay
within bfloat16 rounding of transformers' bfloat16 forward.
"""

from __future__ import annotations

import pytest
import torch

from empathy_distill.config import GenerationSettings, StudentConfig
from empathy_distill.serving.decoder import why_not
from empathy_distill.serving.engine import Engine
from empathy_distill.training.generate import generate
from empathy_distill.training.student import load_student
from tests.families import BY_NAME, FAMILIES, build_family
from tests.integration.test_engine import CHATS

PACKED = ["llama3", "qwen2"]
# oneDNN packs bfloat16 weights only on a CPU with AVX512 (BW/VL/DQ) or AVX-NE-CONVERT; torch names the level it uses
needs_bf16_packing = pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"),
    reason="this CPU has no AVX512: oneDNN cannot pack bfloat16 weights here (mkldnn_reorder_linear_weight refuses)",
)
"""Mistral's stand-in keeps its config's 4,096-token sliding window: refused, like families the pass does not know."""


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoder-families")
    made = {}

    def get(name: str, dtype: str = "float32"):
        if (name, dtype) not in made:
            folder = root / name
            if not folder.exists():
                build_family(BY_NAME[name], folder)
            made[name, dtype] = load_student(str(folder), StudentConfig(model=str(folder), dtype=dtype))
        return made[name, dtype]

    return get


def replies(engine, chats, lengths, settings):
    requests = [engine.submit(c, n, settings.model_dump()) for c, n in zip(chats, lengths)]
    return [r.future.result(120) for r in requests]


@pytest.mark.parametrize("family", PACKED)
def test_packed_pass_gives_generates_greedy_replies_while_chats_join_and_leave(family, students):
    tokenizer, model, fmt = students(family)
    settings = GenerationSettings(max_new_tokens=24, no_repeat_ngram_size=3)
    lengths = [12, 24, 5, 24, 1, 18, 24, 9, 24, 3]
    engine = Engine(model, tokenizer, fmt, max_batch=4, decoder="packed")
    try:
        served = replies(engine, CHATS, lengths, settings)
        stats = engine.stats()
    finally:
        engine.close()
    alone = [
        generate(model, tokenizer, [c], settings.model_copy(update={"max_new_tokens": n}), fmt=fmt, progress=False)[0]
        for c, n in zip(CHATS, lengths)
    ]
    assert stats["decoder"] == "packed" and stats["packed_builds"] == 1
    assert engine.counts["max_running"] == 4  # rows of different lengths and pads shared the batch
    assert served == alone


@pytest.mark.parametrize("family", [f.name for f in FAMILIES if f.name not in PACKED])
def test_families_it_does_not_know_keep_transformers_forward_and_say_why(family, students):
    tokenizer, model, fmt = students(family)
    assert why_not(model) is not None
    engine = Engine(model, tokenizer, fmt, decoder="packed")
    try:
        assert engine.stats()["decoder"].startswith("transformers (")
        reply = engine.submit(CHATS[0], 8, {}).future.result(120)
    finally:
        engine.close()
    alone = generate(model, tokenizer, [CHATS[0]], GenerationSettings(max_new_tokens=8), fmt=fmt, progress=False)
    assert reply == alone[0]


def test_auto_packs_float32_and_bfloat16_on_a_cpu_never_float16_or_unmerged_adapters(students):
    from peft import LoraConfig, get_peft_model

    for dtype in ("float32", "bfloat16"):
        tokenizer, model, fmt = students("llama3", dtype)
        engine = Engine(model, tokenizer, fmt)
        assert engine.stats()["decoder"] == "packed", dtype
        engine.close()
    tokenizer, half, fmt = students("llama3", "float16")
    engine = Engine(half, tokenizer, fmt)
    assert engine.stats()["decoder"] == "transformers (auto packs float32 and bfloat16 weights only (float16 here))"
    engine.close()
    peft = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"), adapter_name="one")
    try:
        engine = Engine(peft, tokenizer, fmt, merge=False)
        assert engine.stats()["decoder"] == "transformers (adapters are not merged)"
        engine.close()
    finally:
        peft.unload()


def test_a_pass_that_cannot_be_built_leaves_transformers_forward_serving(students, monkeypatch):
    import empathy_distill.serving.engine as engine_module

    def broken(*args, **kwargs):
        raise RuntimeError("no such kernel")

    monkeypatch.setattr(engine_module, "PackedDecoder", broken)
    tokenizer, model, fmt = students("llama3")
    engine = Engine(model, tokenizer, fmt, decoder="packed")
    try:
        reply = engine.submit(CHATS[0], 8, {}).future.result(120)
        assert engine.stats()["decoder"] == "transformers (packing failed: RuntimeError)"
    finally:
        engine.close()
    alone = generate(model, tokenizer, [CHATS[0]], GenerationSettings(max_new_tokens=8), fmt=fmt, progress=False)
    assert reply == alone[0]


def test_a_merged_adapter_is_packed_and_rebuilt_after_it_was_unmerged(students):
    """The packed copy holds the merged weights: the replies are the adapter's; a second adapter unmerges it (the
    model's forward serves both), and the first alone again is merged and packed anew."""
    from peft import LoraConfig, get_peft_model

    tokenizer, model, fmt = students("llama3")
    peft = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False), "warm")
    peft.eval()
    settings = GenerationSettings(max_new_tokens=16)
    engine = Engine(peft, tokenizer, fmt, max_batch=8, merge=True, decoder="packed")
    try:
        warm = [generate(peft, tokenizer, [c], settings, fmt=fmt, progress=False)[0] for c in CHATS[:4]]
        served = [engine.submit(c, None, settings.model_dump(), adapter="warm") for c in CHATS[:4]]
        assert [r.future.result(120) for r in served] == warm
        assert engine.packed_builds == 1
        with engine.lock:
            peft.add_adapter("calm", LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
        engine.submit(CHATS[0], None, settings.model_dump(), adapter="calm").future.result(120)
        assert engine.stats()["merged"] == [] and engine._packed is None
        with engine.lock:
            peft.delete_adapter("calm")
        again = [engine.submit(c, None, settings.model_dump(), adapter="warm") for c in CHATS[:4]]
        assert [r.future.result(120) for r in again] == warm
        assert engine.packed_builds == 2
    finally:
        engine.close()
        peft.unload()


@needs_bf16_packing
@pytest.mark.parametrize("family", ["llama3", "qwen2"])
def test_bfloat16_packed_logits_stay_within_bfloat16_rounding_of_transformers(family, students):
    """Prefill of a left-padded batch, then one step, through both: oneDNN's packed bfloat16 kernels against the
    model's own bfloat16 forward (the same sums in another order)."""
    import torch
    from transformers import DynamicCache

    from empathy_distill.serving.decoder import PackedDecoder

    tokenizer, model, fmt = students(family, "bfloat16")
    decoder = PackedDecoder(model)
    assert decoder.packed == torch.backends.mkldnn.is_available()
    prompts = [list(fmt.prompt_ids(tokenizer, c)) for c in CHATS[:3]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ours, theirs = DynamicCache(), DynamicCache()
    with torch.inference_mode():
        got = decoder(ids, mask, positions, ours).logits[:, -1].float()
        want = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=theirs).logits
        want = want[:, -1].float()
        scale = want.abs().max()
        assert (got - want).abs().max() <= 0.05 * scale
        step = got.argmax(-1, keepdim=True)
        mask2 = torch.cat([mask, torch.ones(3, 1, dtype=mask.dtype)], 1)
        pos2 = positions[:, -1:] + 1
        got2 = decoder(step, mask2, pos2, ours).logits[:, -1].float()
        want2 = model(input_ids=step, attention_mask=mask2, position_ids=pos2, past_key_values=theirs).logits[:, -1]
        assert (got2 - want2.float()).abs().max() <= 0.05 * want2.float().abs().max()


@needs_bf16_packing
@pytest.mark.parametrize("family", ["llama3", "qwen2"])
def test_int8_weights_stay_within_their_rounding_of_the_bfloat16_pass(family, students):
    """One scale per output row: each weight within half a step of its row's absmax / 127, so the logits move by a
    fraction of bfloat16's own drift; a float32 model is refused (the kernel takes bfloat16 activations)."""
    import torch
    from transformers import DynamicCache

    from empathy_distill.serving.decoder import PackedDecoder, int8_linear

    w = torch.randn(96, 64) * torch.logspace(-2, 0, 96)[:, None]  # rows of very different sizes
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    exact = x.float() @ w.T
    got = int8_linear(w, None)(x).float()
    half_step = w.abs().amax(1) / 254  # each weight is off by at most half its row's step
    bound = x.float().abs().sum(1, keepdim=True) * half_step + exact.abs() * 2**-8 + 1e-6  # + bfloat16's rounding
    assert ((got - exact).abs() <= bound).all()
    assert not torch.equal(got, (x @ w.to(torch.bfloat16).T).float())  # int8, not bfloat16 weights

    tokenizer, model, fmt = students(family, "bfloat16")
    prompt = torch.tensor([list(fmt.prompt_ids(tokenizer, CHATS[1]))])
    mask, positions = torch.ones_like(prompt), torch.arange(prompt.shape[1])[None]
    with torch.inference_mode():
        ref = PackedDecoder(model)(prompt, mask, positions, DynamicCache()).logits.float()
        q8 = PackedDecoder(model, int8=True)(prompt, mask, positions, DynamicCache()).logits.float()
    assert 0 < (q8 - ref).abs().max() <= 0.1 * ref.abs().max()
    with pytest.raises(ValueError, match="bfloat16 activations"):
        PackedDecoder(students(family)[1], int8=True)
