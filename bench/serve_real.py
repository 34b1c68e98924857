"""Serving a real model (SmolLM2-135M-Instruct unless told otherwise): the server's continuous batching against
in-process batched ``generate()`` on the same prompts, and against this machine's limits.

    .venv/bin/python bench/serve_real.py [--student smollm2-135m-instruct] [--max-new-tokens 64] [--rounds 2]

1. The machine: memory read bandwidth (the sum of a 1 GiB float32 tensor, best of 5) and the float32 matmul peak
   (2048², best of 5), on all of torch's threads.
2. The server (``deploy/server.py`` in its own process) serves a registered version of the base (an all-zero LoRA
   adapter: it answers as the base, and pays for the adapter like a real version) with the demo's generation
   settings (greedy, ``no_repeat_ngram_size`` 3). Clients stream (``stream: true``, usage included): time to
   first token is the client's, from sending to the first text. At 1, 8 and 32 concurrent chats (all sent at
   once; ``--rounds`` rounds of different prompts at 1 and 8): reply tokens/s, TTFT p50/p99.
3. In process, after the server has stopped, in a fresh process as the server's, on the same base and adapter:
   ``generate()`` on the same prompts in one batch of the same size (left-padded, as the evaluation runs it), and
   the server's engine alone (no HTTP), the same chats submitted at once; reply tokens/s. Each side has a process
   of its own, torch working from one thread in each, as in the server: in one process, generate() from the main
   thread and the engine from its own measured both 1.5-1.9x slower (torch's OpenMP thread teams belong to the
   calling thread, and on two cores two teams contend).
4. A late chat: 7 chats mid-reply, then an 8th; its TTFT against a lone chat's (p50 at 1).
5. The replies: the server's (at 8 and 32) against the in-process batch's, text for text; each difference shown,
   with the reply of that chat generated alone to say which side moved.
6. bfloat16 weights (``serve --dtype bfloat16``) at 1 and 8 chats, through transformers' forward and through our
   packed decoding pass (``registry.deploy.decoder``), and int8 weights (``serve --dtype int8``), each in a server of
   its own; their replies against float32's and against each other; llama.cpp on the exported GGUF files against
   the float32, bfloat16 and int8 servers.
7. The limits: a decoding step reads every weight once, so at c chats tokens/s <= c x bandwidth / weight bytes,
   and <= matmul peak / 2N (N parameters: compute); a lone chat's TTFT >= 2N x prompt tokens / peak.

The last line holds the figures as key=value.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

from _common import ROOT, sample_sets, throwaway_stack


def bandwidth(gib: float = 1.0, reps: int = 5) -> float:
    """Bytes/s read by a sum over a large float32 tensor (best of ``reps``)."""
    import torch

    a = torch.ones(int(gib * 2**28))
    a.sum()
    best = min(_timed(a.sum) for _ in range(reps))
    return a.numel() * 4 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Chat:
    """One streamed request's record, as the client saw it."""

    def __init__(self, url: str, messages: list[dict], max_tokens: int):
        self.url, self.messages, self.max_tokens = url, messages, max_tokens
        self.sent = self.first = self.ended = 0.0
        self.text, self.tokens, self.status, self.finish = "", 0, 0, None

    def run(self) -> Chat:
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        body = {
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        self.sent = time.monotonic()
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.status = resp.status
        pieces = []
        while self.status == 200:
            line = resp.readline()
            if not line or line.strip() == b"data: [DONE]":
                break
            if not line.startswith(b"data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                self.tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                text = choice["delta"].get("content")
                if text:
                    self.first = self.first or time.monotonic()
                    pieces.append(text)
                self.finish = choice.get("finish_reason") or self.finish
        self.ended = time.monotonic()
        self.text = "".join(pieces)
        conn.close()
        return self

    @property
    def ttft(self) -> float:
        return (self.first or self.ended) - self.sent


def at_once(chats: list[Chat]) -> float:
    """Runs the chats concurrently; the wall time from the first send to the last end."""
    threads = [threading.Thread(target=c.run) for c in chats]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - start


def send_rounds(url: str, user: list, rounds: dict[int, int], max_tokens: int) -> dict[int, list[list[Chat]]]:
    """For each size c, ``rounds[c]`` groups of c different chats sent at once (one chat: run alone)."""
    served: dict[int, list[list[Chat]]] = {}
    for c, n in rounds.items():
        served[c] = []
        for r in range(n):
            group = [Chat(url, user[(r * c + i) % len(user)], max_tokens) for i in range(c)]
            if c == 1:
                group[0].run()
            else:
                at_once(group)
            assert all(x.status == 200 for x in group), [x.status for x in group]
            served[c].append(group)
    return served


def reply_tok_s(groups: list[list[Chat]]) -> float:
    """Reply tokens per second of wall time, each group from its first send to its last end."""
    wall = sum(max(x.ended for x in g) - min(x.sent for x in g) for g in groups)
    return sum(x.tokens for g in groups for x in g) / wall


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def register(folder: str, work: Path, model, name: str, generation: dict) -> str:
    """A version of ``name`` (the base with an all-zero adapter) in a throw-away store; its tracking URI."""
    import mlflow
    from peft import get_peft_model

    from empathy_distill.config import LoraSettings
    from empathy_distill.prompts import STUDENT_SYSTEM, load_template
    from empathy_distill.registry.promotion import Promotions
    from empathy_distill.registry.pyfunc import log_student_model
    from empathy_distill.training.arguments import lora_config

    peft = get_peft_model(model, lora_config(LoraSettings()))
    peft.save_pretrained(work / "adapter")
    peft.unload()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench-serve-real")
    with mlflow.start_run():
        info = log_student_model(
            str(work / "adapter"),
            folder,
            bundle_base=False,
            chat_template=None,
            dtype="float32",
            generation=generation,
            system_prompt=load_template(STUDENT_SYSTEM),
            model_name=name,
        )
    Promotions.open(uri).move_champion(
        name, str(info.registered_model_version), expected=None, promote=True, action="manual"
    )
    return uri


def in_process(plan_file: str, side: str) -> None:
    """One in-process side, in a process of its own: prints one JSON line, per batch size: ``generate()``'s seconds,
    reply tokens and replies, or the engine's tokens/s."""
    warnings.filterwarnings("ignore")
    from peft import PeftModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from empathy_distill.config import GenerationSettings, StudentConfig
    from empathy_distill.serving.engine import Engine
    from empathy_distill.training.generate import generate
    from empathy_distill.training.student import load_student

    plan = json.loads(Path(plan_file).read_text())
    tokenizer, model, fmt = load_student(plan["folder"], StudentConfig(model=plan["folder"], dtype="float32"))
    model = PeftModel.from_pretrained(model, plan["adapter"])
    model.eval()
    if side == "generate":  # merged, as the server serves one adapter: the like-for-like comparison
        model = model.merge_and_unload()
    settings = GenerationSettings(**plan["generation"])
    chats = plan["chats"]
    out: dict[str, dict] = {}
    rounds = {int(c): n for c, n in plan["rounds"].items()}
    if side == "engine":
        engine = Engine(model, tokenizer, fmt, max_batch=64, merge=True)
        engine.submit(chats[0], 2, plan["generation"], adapter="default").future.result()
        for c, n in rounds.items():
            engine_s, engine_tokens = 0.0, 0
            for r in range(n):
                batch = [chats[(r * c + i) % len(chats)] for i in range(c)]
                start = time.perf_counter()
                asked = [engine.submit(chat, None, plan["generation"], adapter="default") for chat in batch]
                engine_tokens += sum(a.future.result().completion_tokens for a in asked)
                engine_s += time.perf_counter() - start
            out[str(c)] = {"engine_tok_s": engine_tokens / engine_s}
        engine.close(wait_s=60)
        print(json.dumps(out))
        return
    generate(model, tokenizer, chats[:2], settings.model_copy(update={"batch_size": 2}), fmt=fmt, progress=False)
    for c, n in rounds.items():
        seconds, tokens, replies = 0.0, 0, []
        for r in range(n):
            batch = [chats[(r * c + i) % len(chats)] for i in range(c)]
            start = time.perf_counter()
            made = generate(
                model, tokenizer, batch, settings.model_copy(update={"batch_size": c}), fmt=fmt, progress=False
            )
            seconds += time.perf_counter() - start
            tokens += sum(m.completion_tokens for m in made)
            replies += [m.text for m in made]
        out[str(c)] = {"seconds": seconds, "tokens": tokens, "replies": replies}
    print(json.dumps(out))


def llamacpp_side(args, work: Path, uri: str, folder: str, chats: list) -> dict[str, dict] | None:
    """llama.cpp's tokens/s for one chat on the served version exported to GGUF (``deploy gguf``: F16, Q8_0) and on
    the packaged file it came from, in the bench-only venv's Python; None where that venv is absent."""
    from app.serving_ops import gguf_export
    from empathy_distill.training.sources import gguf_source, is_gguf_name

    python = Path(args.llamacpp_python)
    if not python.exists():
        return None
    os.environ["MLFLOW_TRACKING_URI"] = uri
    gguf_export("models:/bench-served@champion", str(work / "gguf"), ["f16", "q8_0"], log=False)
    files = {kind: next((work / "gguf").rglob(f"*{kind}*.gguf")) for kind in ("f16", "q8_0")}
    if is_gguf_name(args.student):
        source = Path(gguf_source(args.student, args.cache_dir).path)
        files[source.suffixes[-2].lstrip(".").lower() if len(source.suffixes) > 1 else "source"] = source
    plan = {
        "files": {k: str(v) for k, v in files.items()},
        "chats": chats,
        "max_tokens": args.max_new_tokens,
        "threads": os.cpu_count(),
        "rounds": args.rounds * 2,
    }
    (work / "llamacpp.json").write_text(json.dumps(plan))
    done = subprocess.run(
        [str(python), str(Path(__file__).with_name("llamacpp_side.py")), str(work / "llamacpp.json")],
        check=True,
        capture_output=True,
        text=True,
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    for label, path in files.items():
        got[label]["mb"] = path.stat().st_size / 1e6
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="smollm2-135m-instruct")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache-dir", default=str(ROOT / ".cache" / "students"))
    parser.add_argument(
        "--llamacpp-python",
        default=str(ROOT / ".cache" / "bench-llamacpp" / "bin" / "python"),
        help="the Python of the venv holding llama-cpp-python (make llamacpp); absent: the column is skipped",
    )
    parser.add_argument("--inproc", help=argparse.SUPPRESS)  # an in-process side, run by this script
    parser.add_argument("--side", default="generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inproc:
        return in_process(args.inproc, args.side)
    warnings.filterwarnings("ignore")
    work = throwaway_stack("bench-serve-real-")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from train_real import matmul_peak

    from deploy.client import start, stop, wait_ready
    from empathy_distill.config import DeployConfig, GenerationSettings, StudentConfig
    from empathy_distill.training.generate import generate, prompts_for_test_split
    from empathy_distill.training.sources import resolve_student
    from empathy_distill.training.student import load_student
    from tests.services import free_port

    figures: dict[str, float] = {}
    bw, peak = bandwidth(), matmul_peak("float32")
    print(
        f"machine ({torch.get_num_threads()} threads): memory read {bw / 1e9:.1f} GB/s, float32 matmul "
        f"{peak / 1e9:.1f} GFLOP/s"
    )
    folder, _ = resolve_student(args.student, args.cache_dir)
    tokenizer, model, fmt = load_student(folder, StudentConfig(model=args.student, cache_dir=args.cache_dir))
    n_params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    table, _ = sample_sets()
    rows = prompts_for_test_split(table.assign(split="test"), limit=48)
    chats = [[{"role": "system", "content": s}, {"role": "user", "content": u}] for s, u in zip(rows.system, rows.user)]
    prompt_tokens = statistics.mean(len(fmt.prompt_ids(tokenizer, c)) for c in chats)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, no_repeat_ngram_size=3)
    generation = settings.model_dump(include={"max_new_tokens", "temperature", "top_p", "no_repeat_ngram_size"})
    print(
        f"student: {args.student}, {n_params / 1e6:.1f}M parameters ({weight_bytes / 1e6:.0f} MB of float32 weights "
        f"read per decoding step); {len(chats)} sample prompts of {prompt_tokens:.0f} tokens on average; replies "
        f"greedy, at most {args.max_new_tokens} tokens, no_repeat_ngram_size 3"
    )

    uri = register(folder, work, model, "bench-served", generation)
    port = free_port()
    proc = start(
        "bench-served", uri, DeployConfig(port=port, state_dir=str(work / "deploy"), max_concurrency=64, poll_s=5)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 300, proc)
        user = [c[1:] for c in chats]  # the registered system prompt is the same text: the server adds it
        Chat(url, user[0], 4).run()  # warm

        rounds = {1: args.rounds * 2, 8: args.rounds, 32: 1}
        served = send_rounds(url, user, rounds, args.max_new_tokens)

        # a late chat: 7 mid-reply, then one more
        late_ratios, late_running = [], []
        lone = pct([g[0].ttft for g in served[1]], 0.5)
        for r in range(args.rounds):
            early = [Chat(url, user[(8 + r * 8 + i) % len(user)], 128) for i in range(7)]
            threads = [threading.Thread(target=x.run) for x in early]
            for t in threads:
                t.start()
            while not all(x.first for x in early):
                time.sleep(0.005)
            late = Chat(url, user[(15 + r * 8) % len(user)], args.max_new_tokens).run()
            for t in threads:
                t.join()
            late_running.append(sum(x.ended > late.first for x in early))
            late_ratios.append(late.ttft / lone)
    finally:
        stop(proc.pid)

    # the same server with bfloat16 weights, through transformers' forward and through our packed pass: one chat,
    # 8 at once, and their replies against float32's
    bf16 = {}
    for decoder, dtype in (("transformers", "bfloat16"), ("packed", "bfloat16"), ("int8", "int8")):
        port = free_port()
        served = DeployConfig(
            port=port,
            state_dir=str(work / f"deploy-{decoder}"),
            max_concurrency=64,
            dtype=dtype,
            decoder="packed" if decoder == "int8" else decoder,
        )
        proc = start("bench-served", uri, served)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, 300, proc)
            Chat(url, user[0], 4).run()
            bf16[decoder] = send_rounds(url, user, {c: rounds[c] for c in (1, 8)}, args.max_new_tokens)
        finally:
            stop(proc.pid)

    # in process, in a fresh process of its own as the server had (this one ran the clients and the registration):
    # generate() on the same prompts in batches of the same size, on the same adapter, and the engine alone
    plan = {
        "folder": folder,
        "adapter": str(work / "adapter"),
        "generation": generation,
        "chats": chats,
        "rounds": {c: len(g) for c, g in served.items()},
    }
    (work / "inproc.json").write_text(json.dumps(plan))
    measured = {}
    for side in ("generate", "engine"):
        done = subprocess.run(
            [sys.executable, __file__, "--inproc", str(work / "inproc.json"), "--side", side],
            check=True,
            capture_output=True,
            text=True,
        )
        measured[side] = json.loads(done.stdout.strip().splitlines()[-1])
    inproc = {int(c): (v["seconds"], v["tokens"], v["replies"]) for c, v in measured["generate"].items()}
    llamacpp = llamacpp_side(args, work, uri, folder, chats)
    engine_tok_s = {int(c): v["engine_tok_s"] for c, v in measured["engine"].items()}

    print(
        "| chats at once | server tok/s | TTFT p50 | TTFT p99 | engine in process tok/s | generate() batch tok/s | "
        "server / generate() | limit tok/s (bandwidth, compute) | server / limit |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for c, groups in served.items():
        flat = [x for g in groups for x in g]
        tok_s = reply_tok_s(groups)
        in_s = inproc[c][1] / inproc[c][0]
        limit = min(c * bw / weight_bytes, peak / (2 * n_params))
        p50, p99 = pct([x.ttft for x in flat], 0.5), pct([x.ttft for x in flat], 0.99)
        print(
            f"| {c} | {tok_s:.1f} | {p50 * 1e3:.0f} ms | {p99 * 1e3:.0f} ms | {engine_tok_s[c]:.1f} | {in_s:.1f} | "
            f"{tok_s / in_s:.2f} | "
            f"{limit:.0f} ({c * bw / weight_bytes:.0f}, {peak / (2 * n_params):.0f}) | {tok_s / limit:.2f} |"
        )
        figures.update(
            {
                f"c{c}_tok_s": tok_s,
                f"c{c}_ttft_p50_ms": p50 * 1e3,
                f"c{c}_ttft_p99_ms": p99 * 1e3,
                f"c{c}_vs_inproc": tok_s / in_s,
                f"c{c}_engine_tok_s": engine_tok_s[c],
                f"c{c}_vs_limit": tok_s / limit,
            }
        )
    prefill_floor = 2 * n_params * prompt_tokens / peak
    print(
        f"a lone chat's TTFT: p50 {lone * 1e3:.0f} ms; its prefill at the float32 matmul peak measured above "
        f"{prefill_floor * 1e3:.0f} ms ({prompt_tokens:.0f} tokens x 2N / peak) plus one decoding step "
        f"(>= {weight_bytes / bw * 1e3:.0f} ms at the bandwidth)"
    )
    print(
        f"a late chat (7 others mid-reply; still running at its first text: {late_running}): TTFT "
        + ", ".join(f"{r:.2f}x" for r in late_ratios)
        + " a lone chat's"
    )
    figures.update(late_ttft_ratio=max(late_ratios), late_others_running=min(late_running) / 7)

    print(
        "bfloat16 weights (serve --dtype bfloat16), the same server and prompts, through transformers' forward and "
        "through our packed pass (registry.deploy.decoder; auto packs float32 and bfloat16 on a CPU: the float32 "
        "server above was packed too), and int8 weights (serve --dtype int8):"
    )
    print(
        "| chats at once | float32 tok/s | bfloat16, transformers tok/s | bfloat16, packed tok/s | int8 tok/s | "
        "packed / float32 | packed / transformers bfloat16 | int8 / float32 | packed TTFT p50 | int8 TTFT p50 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in (1, 8):
        plain, packed, int8 = (reply_tok_s(bf16[k][c]) for k in ("transformers", "packed", "int8"))
        p50 = {k: pct([x.ttft for g in bf16[k][c] for x in g], 0.5) * 1e3 for k in ("packed", "int8")}
        f32 = figures[f"c{c}_tok_s"]
        print(
            f"| {c} | {f32:.1f} | {plain:.1f} | {packed:.1f} | {int8:.1f} | {packed / f32:.2f} | {packed / plain:.2f} "
            f"| {int8 / f32:.2f} | {p50['packed']:.0f} ms | {p50['int8']:.0f} ms |"
        )
        figures.update({f"bf16_c{c}_tok_s": plain, f"packed_c{c}_tok_s": packed, f"int8_c{c}_tok_s": int8})

    def texts(groups: dict[int, list[list[Chat]]]) -> list[str]:
        return [x.text for c in (1, 8) for g in groups[c] for x in g]

    def drift(label: str, ours: list[str], theirs: list[str], key: str) -> None:
        pairs = list(zip(theirs, ours))
        same = sum(a == b for a, b in pairs)
        shared = [len(os.path.commonprefix([a, b])) / max(len(a), 1) for a, b in pairs]
        print(
            f"  {label}: {same}/{len(pairs)} replies identical; the first {statistics.mean(shared):.0%} of a reply is "
            "shared on average (greedy: after the first different token the replies part)"
        )
        for a, b in [p for p in pairs if p[0] != p[1]][:2]:
            k = len(os.path.commonprefix([a, b]))
            print(f"    before: …{a[max(0, k - 30) : k + 50]!r}\n    after:  …{b[max(0, k - 30) : k + 50]!r}")
        figures[key] = same / len(pairs)

    f32_texts = texts(served)
    drift("bfloat16 (transformers) vs float32", texts(bf16["transformers"]), f32_texts, "bf16_identical")
    drift("bfloat16 packed vs float32", texts(bf16["packed"]), f32_texts, "packed_vs_f32_identical")
    plain_texts = texts(bf16["transformers"])
    drift("bfloat16 packed vs bfloat16 transformers", texts(bf16["packed"]), plain_texts, "packed_identical")
    drift("int8 vs float32", texts(bf16["int8"]), f32_texts, "int8_identical")
    drift("int8 vs bfloat16 packed", texts(bf16["int8"]), texts(bf16["packed"]), "int8_vs_bf16_identical")

    if llamacpp is None:
        print(f"llama.cpp: skipped, no {args.llamacpp_python} (make llamacpp builds it, for the bench only)")
    else:
        lone_f32, lone_packed, lone_int8 = (figures[k] for k in ("c1_tok_s", "packed_c1_tok_s", "int8_c1_tok_s"))
        many = max(figures["packed_c8_tok_s"], figures["int8_c8_tok_s"])
        print(
            "llama.cpp (llama-cpp-python, one chat at a time, streamed, greedy, no repeat penalty; the same prompts; "
            f"{torch.get_num_threads()} threads):"
        )
        print(
            "| GGUF file | MB | llama.cpp tok/s (1 chat) | TTFT p50 | server 1 chat / llama.cpp: float32 | "
            "bfloat16 packed | int8 | server 8 at once (packed, the faster of bfloat16 and int8) / llama.cpp |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for label, got in llamacpp.items():
            rate = got["tok_s"]
            print(
                f"| {label} | {got['mb']:.0f} | {rate:.1f} | {got['ttft_p50_ms']:.0f} ms | {lone_f32 / rate:.2f} | "
                f"{lone_packed / rate:.2f} | {lone_int8 / rate:.2f} | {many / rate:.2f} |"
            )
            figures[f"llamacpp_{label}_tok_s"] = rate
        fastest = max(v["tok_s"] for v in llamacpp.values())
        figures.update(
            c1_f32_vs_llamacpp=lone_f32 / fastest,
            c1_bf16_vs_llamacpp=lone_packed / fastest,
            c1_vs_llamacpp=max(lone_packed, lone_int8) / fastest,
            c8_vs_llamacpp=many / fastest,
        )
        f16 = llamacpp.get("f16")
        if f16:
            ours = [x.text for g in served[1] for x in g]
            same_f16 = sum(a == b for a, b in zip(ours, f16["replies"]))
            print(
                f"  llama.cpp on the exported F16 file vs the server, lone chats: {same_f16}/{len(f16['replies'])} "
                "replies identical (llama.cpp has no no_repeat_ngram_size: a reply that would repeat a 3-gram parts)"
            )

    same, total, shown = 0, 0, 0
    for c in (8, 32):
        flat = [x for g in served[c] for x in g]
        for i, (x, ref) in enumerate(zip(flat, inproc[c][2])):
            total += 1
            if x.text == ref:
                same += 1
                continue
            chat = chats[(i // c * c + i % c) % len(chats)]
            alone = generate(model, tokenizer, [chat], settings, fmt=fmt, progress=False)[0].text
            k = next((j for j, (a, b) in enumerate(zip(x.text, ref)) if a != b), min(len(x.text), len(ref)))
            if shown < 5:
                shown += 1
                print(
                    f"  at {c}: reply {i} differs from character {k} (alone = "
                    f"{'server' if alone == x.text else 'in-process' if alone == ref else 'neither'}):\n"
                    f"    server:     …{x.text[max(0, k - 30) : k + 50]!r}\n"
                    f"    in-process: …{ref[max(0, k - 30) : k + 50]!r}"
                )
    print(f"greedy replies, server vs in-process batch: {same}/{total} identical")
    figures["serve_identical"] = same / total
    figures.update(bandwidth_gb_s=bw / 1e9, peak_gflops=peak / 1e9)
    print(" ".join(f"{k}={v:.4g}" for k, v in figures.items()))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
