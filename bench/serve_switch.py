"""The stable address under load while the champion moves: promote -> rollback -> promote, then latency at 8 and 32
concurrent chats beside in-process generation.

    .venv/bin/python bench/serve_switch.py [--max-tokens 16] [--poll-s 1.0]

Two versions of the demo's tiny student (two short SFT runs from data/sample, seeds 0 and 1)
are registered in a throw-away MLflow store; v1 is champion. The server (``deploy/server.py``,
what ``serve`` and the deploy step run) starts at one port. Eight clients send
``/v1/chat/completions`` for ``champion`` back to back while the alias moves to v2, back to v1
(the history's rollback) and to v2 again, each move once the replies have followed the last one.
Every reply says which version answered it; a move's lag is the time from the alias moving to
the first reply from the new version, and a stale reply is one sent after that first reply but
answered by the version before. Then 8 and 32 clients send a fixed number of chats each, and the
same chats are generated in-process with ``generate()`` (batch 1, and one batch of 8 and of 32),
the lower bound a server could reach. The last line is

    switch_requests=<n> switch_failures=<n> switch_max_lag_s=<s> switch_stale=<n> switch_p50_ms=<ms>
    switch_p99_ms=<ms> c8_p50_ms=<ms> c8_p99_ms=<ms> c32_p50_ms=<ms> c32_p99_ms=<ms> inproc_1_ms=<ms>
    inproc_8_ms=<ms> inproc_32_ms=<ms> c8_vs_inproc=<c8 p50 / in-process batch of 8>
    c32_vs_inproc=<c32 p50 / in-process batch of 32> lag_bound_s=<poll_s + 10>
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import sample_world

MODEL = "empathy-student"


def register(work: Path, uri: str) -> tuple[list[str], str, object]:
    """Two trained versions of the tiny student; returns (versions, base folder, student config)."""
    import mlflow
    import torch

    from empathy_distill.config import StageSettings, TrainingConfig
    from empathy_distill.prompts import load_template
    from empathy_distill.registry.pyfunc import log_student_model

    table, sets, student, base = sample_world(work / "students")
    versions = []
    mlflow.set_tracking_uri(uri)
    for seed in (0, 1):
        torch.manual_seed(seed)
        from empathy_distill.training.sft import fit_sft

        sft = fit_sft(
            base,
            sets.sft,
            TrainingConfig(
                output_dir=str(work / f"runs-{seed}"),
                seed=seed,
                sft=StageSettings(learning_rate=1e-3, max_steps=20, batch_size=4),
            ),
            student,
        )
        with mlflow.start_run():
            info = log_student_model(
                sft.adapter_dir,
                str(base),
                bundle_base=True,
                chat_template=None,
                dtype="float32",
                generation={"max_new_tokens": 32, "temperature": 0.0, "top_p": 1.0, "no_repeat_ngram_size": 3},
                system_prompt=load_template("student_system"),
                model_name=MODEL,
            )
        versions.append(str(info.registered_model_version))
    mlflow.set_tracking_uri(None)
    return versions, str(base), student


def at_concurrency(url: str, clients: int, chats: int, max_tokens: int) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, failures) of ``chats`` requests sent ``clients`` at a time."""
    from deploy.loadtest import LoadLoop

    loop = LoadLoop(url, clients=clients, max_tokens=max_tokens)
    with ThreadPoolExecutor(clients) as pool:
        records = list(pool.map(loop.one, range(chats)))
    latencies = sorted(r.done - r.sent for r in records if r.status == 200)
    failures = sum(r.status != 200 for r in records)
    return statistics.median(latencies) * 1000, latencies[max(0, int(0.99 * len(latencies)) - 1)] * 1000, failures


def in_process(base: str, adapter_dir: str, student, max_tokens: int) -> dict[int, float]:
    """Milliseconds for one generate() call of 1, 8 and 32 chats (median of 3) on the same model and settings."""
    from peft import PeftModel

    from empathy_distill.config import GenerationSettings
    from empathy_distill.prompts import load_template
    from empathy_distill.training.generate import generate
    from empathy_distill.training.student import load_student

    tokenizer, model, fmt = load_student(base, student)
    model = PeftModel.from_pretrained(model, adapter_dir)
    system = load_template("student_system")
    out = {}
    for n in (1, 8, 32):
        chats = [
            [{"role": "system", "content": system}, {"role": "user", "content": f"Day {i} was long and I feel low."}]
            for i in range(n)
        ]
        settings = GenerationSettings(max_new_tokens=max_tokens, temperature=0.0, batch_size=n)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            generate(model, tokenizer, chats, settings, fmt=fmt, progress=False)
            times.append(time.perf_counter() - start)
        out[n] = statistics.median(times) * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--poll-s", type=float, default=1.0)
    parser.add_argument("--chats", type=int, default=160, help="chats per concurrency level")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from deploy.client import start, stop, wait_ready, wait_serving
    from deploy.loadtest import LoadLoop
    from empathy_distill.config import DeployConfig
    from empathy_distill.registry.promotion import Promotions

    work = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    (v1, v2), base, student = register(work, uri)
    p = Promotions.open(uri)
    p.move_champion(MODEL, v1, expected=None, promote=True, action="manual")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = start(
        MODEL, uri, DeployConfig(port=port, state_dir=str(work / "deploy"), max_concurrency=32, poll_s=args.poll_s)
    )
    url = f"http://127.0.0.1:{port}"
    bound = args.poll_s + 10.0
    try:
        ready = wait_ready(url, 180, proc)
        wait_serving(url, v1, 60)
        loop = LoadLoop(url, clients=8, max_tokens=args.max_tokens).start()
        time.sleep(3)
        for target, move in (
            (v2, lambda: p.move_champion(MODEL, v2, expected=v1, promote=True, action="manual")),
            (v1, lambda: p.rollback(MODEL, actor="bench", reason="bench: rollback")),
            (v2, lambda: p.move_champion(MODEL, v2, expected=v1, promote=True, action="manual")),
        ):
            loop.mark(target)  # before the move: the router may switch while its registry writes still run
            move()
            loop.wait_for(target, bound + 30)
            time.sleep(3)
        loop.stop()
        switch = loop.summary()
        c8 = at_concurrency(url, 8, args.chats, args.max_tokens)
        c32 = at_concurrency(url, 32, args.chats, args.max_tokens)
    finally:
        stop(proc.pid)
    adapter = next((work / "deploy" / "versions" / f"{MODEL}-v{v2}" / "artifacts").glob("*/adapter_config.json"))
    inproc = in_process(base, str(adapter.parent), student, args.max_tokens)
    lags = [m["lag_s"] for m in switch["moves"]]
    stale = sum(m["stale_after_switch"] for m in switch["moves"])
    print(f"server ready in {ready:.1f} s; 8 clients through promote -> rollback -> promote:")
    for m in switch["moves"]:
        print(
            f"  -> v{m['to']}: {m['replies']} replies, first from v{m['to']} {m['lag_s']} s after the move, "
            f"{m['stale']} from the previous version before it, {m['stale_after_switch']} after it"
        )
    print(
        f"  {switch['requests']} requests, {switch['failures']} failed, p50 {switch['p50_ms']} ms, p99 "
        f"{switch['p99_ms']} ms"
    )
    print(
        f"{args.chats} chats at 8 concurrent: p50 {c8[0]:.0f} ms, p99 {c8[1]:.0f} ms ({c8[2]} failed); at 32: p50 "
        f"{c32[0]:.0f} ms, p99 {c32[1]:.0f} ms ({c32[2]} failed); in-process generate(): 1 chat {inproc[1]:.0f} ms, "
        f"8 chats {inproc[8]:.0f} ms, 32 chats {inproc[32]:.0f} ms ({args.max_tokens} new tokens)"
    )
    print(
        f"switch_requests={switch['requests']} switch_failures={switch['failures'] + c8[2] + c32[2]} "
        f"switch_max_lag_s={max(lags):.2f} switch_stale={stale} switch_p50_ms={switch['p50_ms']} "
        f"switch_p99_ms={switch['p99_ms']} c8_p50_ms={c8[0]:.0f} c8_p99_ms={c8[1]:.0f} c32_p50_ms={c32[0]:.0f} "
        f"c32_p99_ms={c32[1]:.0f} inproc_1_ms={inproc[1]:.0f} inproc_8_ms={inproc[8]:.0f} "
        f"inproc_32_ms={inproc[32]:.0f} c8_vs_inproc={c8[0] / inproc[8]:.2f} c32_vs_inproc={c32[0] / inproc[32]:.2f} "
        f"lag_bound_s={bound:.1f}"
    )


if __name__ == "__main__":
    main()
