"""llama.cpp's side of the serving bench, run by ``bench/serve_real.py`` with the Python of the bench-only venv that
``make llamacpp`` builds (``.cache/bench-llamacpp``): llama-cpp-python is never a dependency of the project.

    .cache/bench-llamacpp/bin/python bench/llamacpp_side.py PLAN.json

PLAN holds ``files`` (label -> GGUF path), ``chats`` (OpenAI-style message lists), ``max_tokens``, ``threads`` and
``rounds``. For each file: one chat at a time, streamed, greedy (temperature 0, no repeat penalty), ``rounds``
chats; per chat the wall time from the call to the last token, the time to the first text, and the reply's tokens.
Prints one JSON line: label -> {tok_s, ttft_p50_ms, replies}.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path


def main(plan_file: str) -> None:
    from llama_cpp import Llama

    plan = json.loads(Path(plan_file).read_text())
    out = {}
    for label, path in plan["files"].items():
        llm = Llama(model_path=path, n_ctx=2048, n_threads=plan["threads"], n_batch=512, verbose=False, seed=0)
        llm.create_chat_completion(plan["chats"][0], max_tokens=2, temperature=0.0)  # warm
        tokens, seconds, ttfts, replies = 0, 0.0, [], []
        for chat in plan["chats"][: plan["rounds"]]:
            start = time.perf_counter()
            first, text, count = None, [], 0
            for chunk in llm.create_chat_completion(
                chat, max_tokens=plan["max_tokens"], temperature=0.0, repeat_penalty=1.0, stream=True
            ):
                delta = chunk["choices"][0]["delta"].get("content")
                if delta:
                    count += 1  # llama-cpp-python streams one chunk per generated token
                    text.append(delta)
                    if first is None:
                        first = time.perf_counter() - start
            seconds += time.perf_counter() - start
            tokens += count
            ttfts.append(first or 0.0)
            replies.append("".join(text).strip())
        out[label] = {"tok_s": tokens / seconds, "ttft_p50_ms": statistics.median(ttfts) * 1e3, "replies": replies}
        del llm
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
