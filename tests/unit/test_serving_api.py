"""The serving API's pure parts: request checks in OpenAI's error shape, the token fit, and the vLLM command."""

from __future__ import annotations

import json

import pytest

from empathy_distill.serving.api import (
    MAX_BODY_BYTES,
    MAX_MESSAGES,
    ApiError,
    chat_request,
    completion,
    invocation_params,
    parse_body,
)
from empathy_distill.serving.engine import fit
from empathy_distill.serving.vllm import (
    LoraModule,
    VllmError,
    adapter_rank,
    has_chat_template,
    max_lora_rank,
    render,
    serve_argv,
)

USER = [{"role": "user", "content": "I lost my keys again."}]


def refused(call, *args) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)
    body = caught.value.body()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    return caught.value


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{oops", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "nested"),
        (b"[1]", "JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_400(raw, says):
    error = refused(parse_body, raw)
    assert error.status == 400 and says in error.message


def test_a_body_over_the_limit_is_413():
    assert refused(parse_body, b" " * (MAX_BODY_BYTES + 1)).status == 413


def test_a_chat_request_is_checked_field_by_field():
    ok = chat_request({"messages": USER, "max_tokens": 5, "temperature": 0.5, "top_p": 0.9})
    assert (ok.model, ok.max_tokens, ok.temperature, ok.top_p) == ("champion", 5, 0.5, 0.9)
    assert chat_request({"messages": USER, "max_completion_tokens": 7}).max_tokens == 7
    streamed = chat_request({"messages": USER, "stream": True, "stream_options": {"include_usage": True}})
    assert streamed.stream and streamed.include_usage
    assert not chat_request({"messages": USER, "stream": True}).include_usage
    assert chat_request({"messages": USER, "seed": 7}).seed == 7 and chat_request({"messages": USER}).seed is None
    developer = chat_request({"messages": [{"role": "developer", "content": "Be brief."}, *USER]})
    assert developer.messages[0]["role"] == "system"
    parts = chat_request(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    )
    assert parts.messages[0]["content"] == "ab"
    cases = {
        "model": {"model": "", "messages": USER},
        "stream": {"messages": USER, "stream": "yes"},
        "stream_options": {"messages": USER, "stream_options": {"include_usage": True}},  # without stream
        "stream_options.include_usage": {"messages": USER, "stream": True, "stream_options": {"include_usage": 1}},
        "n": {"messages": USER, "n": 3},
        "max_tokens": {"messages": USER, "max_tokens": True},
        "temperature": {"messages": USER, "temperature": "warm"},
        "top_p": {"messages": USER, "top_p": 0},
        "seed": {"messages": USER, "seed": -1},
        "messages": {"messages": []},
        "messages[0].role": {"messages": [{"role": "tool", "content": "x"}]},
        "messages[0].content": {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    }
    for param, body in cases.items():
        error = refused(chat_request, body)
        assert error.status == 400 and error.param == param, (param, error)
    too_many = [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)
    assert f"{MAX_MESSAGES + 1} messages" in refused(chat_request, {"messages": too_many}).message
    assert refused(chat_request, {"messages": [*USER, {"role": "assistant", "content": "ok"}]}).param == "messages"


def test_invocation_params_are_checked_like_chat_settings():
    assert invocation_params(None) == {}
    assert invocation_params({"max_new_tokens": 4, "temperature": 0})["max_new_tokens"] == 4
    for params, param in [
        ("x", "params"),
        ({"max_new_tokens": "lots"}, "params.max_new_tokens"),
        ({"max_new_tokens": 100000}, "params.max_new_tokens"),
        ({"no_repeat_ngram_size": -1}, "params.no_repeat_ngram_size"),
        ({"temperature": 5}, "temperature"),
        ({"beam_width": 4}, "params"),
    ]:
        assert refused(invocation_params, params).param == param, params


def test_the_fit_counts_tokens_against_the_context():
    assert fit(100, 50, 64, 256) == 50
    assert fit(100, None, 64, 256) == 64  # the registered default
    assert fit(250, None, 64, 256) == 6  # cut to what the context leaves
    error = refused(fit, 200, 100, 64, 256)
    assert error.code == "context_length_exceeded" and "300 is above the model's context of 256" in error.message
    assert "lower max_tokens to 56" in error.message
    assert refused(fit, 300, None, 64, 256).code == "context_length_exceeded"


def test_a_completion_counts_its_usage():
    body = completion("empathy-student/3", "That sounds hard.", "stop", 40, 5)
    assert body["usage"] == {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45}
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"


def module(name: str, rank: int, base_key: str = "fp1") -> LoraModule:
    return LoraModule(name, "3", f"/srv/{name}", rank, "/srv/base", base_key)


def test_the_vllm_rank_is_rounded_up_to_what_vllm_accepts():
    assert [max_lora_rank([r]) for r in (1, 4, 8, 9, 16, 33, 300, 512)] == [8, 8, 8, 16, 16, 64, 320, 512]
    with pytest.raises(VllmError, match="above the largest"):
        max_lora_rank([1024])


def test_the_vllm_command_holds_every_alias_on_one_base():
    argv = serve_argv(
        [module("champion", 16), module("challenger", 32)],
        served_name="empathy-student",
        port=8001,
        dtype="bfloat16",
        chat_template_file="/srv/chat_template.jinja",
        generation={"max_new_tokens": 96, "temperature": 0.7, "top_p": 0.9, "no_repeat_ngram_size": 3},
    )
    assert argv[:3] == ["vllm", "serve", "/srv/base"]
    line = " ".join(argv)
    assert "--enable-lora --max-loras 2 --max-lora-rank 32" in line
    assert "--lora-modules champion=/srv/champion challenger=/srv/challenger" in line
    assert "--chat-template /srv/chat_template.jinja" in line and "--dtype bfloat16 " in line
    overrides = json.loads(argv[argv.index("--override-generation-config") + 1])
    assert overrides == {"max_new_tokens": 96, "temperature": 0.7, "top_p": 0.9}  # vLLM has no no_repeat_ngram_size
    text = render(argv)
    assert text.splitlines()[0] == "vllm serve /srv/base \\"
    assert '  --override-generation-config \'{"max_new_tokens": 96' in text
    with pytest.raises(VllmError, match="different bases"):
        serve_argv([module("champion", 8), module("challenger", 8, "fp2")], served_name="m")
    with pytest.raises(VllmError, match="nothing to serve"):
        serve_argv([], served_name="m")


def test_the_adapter_rank_is_read_from_the_peft_config(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "rank_pattern": {"q": 64}}))
    assert adapter_rank(tmp_path) == 64
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "use_dora": True}))
    with pytest.raises(VllmError, match="DoRA"):
        adapter_rank(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(VllmError, match="not LoRA"):
        adapter_rank(tmp_path)
    with pytest.raises(VllmError, match="not a readable"):
        adapter_rank(tmp_path / "nowhere")


def test_a_base_without_a_template_is_told_apart(tmp_path):
    assert has_chat_template("meta-llama/Llama-3.2-1B-Instruct") is None  # a hub id: unknown offline
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    assert has_chat_template(tmp_path) is False
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    assert has_chat_template(tmp_path) is True


def test_stream_deltas_never_split_a_character_and_add_up_to_the_reply():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from empathy_distill.serving.engine import stream_delta

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    every_byte = pre_tokenizers.ByteLevel.alphabet()  # as real byte-level vocabularies: any text, byte by byte
    tok.train_from_iterator(
        ["I am so sorry to hear that."] * 5, trainers.BpeTrainer(vocab_size=300, initial_alphabet=every_byte)
    )
    reply = "  I am so sorry 😢 — ça va aller, 你好.  "
    ids = tok.encode(reply).ids
    prefixes = [tok.decode(ids[:k]) for k in range(1, len(ids) + 1)]
    assert any(p.endswith("\ufffd") for p in prefixes)  # byte tokens: a prefix does end inside a character
    sent = ""
    for decoded in prefixes:
        delta = stream_delta(decoded, sent)
        assert "\ufffd" not in delta and not delta[-1:].isspace() if delta else True
        sent += delta
    assert sent == tok.decode(ids).strip() == reply.strip()
    assert stream_delta("Hello wor", "Hello world") == ""  # a rewrite of text already sent waits for the end


def test_a_stream_is_openai_chunks_then_done():
    from empathy_distill.serving.api import DONE, ChunkStream

    def events(raw: bytes) -> list:
        assert raw.endswith(b"\n\n")
        parts = [p.removeprefix(b"data: ") for p in raw.split(b"\n\n") if p]
        return [p.decode() if p == b"[DONE]" else json.loads(p) for p in parts]

    stream = ChunkStream("empathy-student/3", include_usage=True)
    first, delta = events(stream.start())[0], events(stream.delta("Hé"))[0]
    assert first["object"] == "chat.completion.chunk" and first["model"] == "empathy-student/3"
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    assert delta["choices"][0]["delta"] == {"content": "Hé"} and delta["usage"] is None and delta["id"] == first["id"]
    end = events(stream.end("length", 12, 5))
    assert end[0]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert end[1]["choices"] == [] and end[1]["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
    }
    assert end[2] == "[DONE]" and stream.end("stop", 1, 1).endswith(DONE)
    plain = ChunkStream("m")
    assert "usage" not in events(plain.delta("x"))[0] and len(events(plain.end("stop", 1, 1))) == 2
    error = events(ChunkStream.error(ApiError(500, "generation failed", type="server_error")))
    assert error[0]["error"]["message"] == "generation failed" and error[1] == "[DONE]"
