"""Every benchmark in one go, then one table: figure, value, goal, pass or fail.

    make bench            # or: .venv/bin/python bench/run_all.py [--only teacher,generation]

Each benchmark runs in its own process, one after another (they would share the two cores
otherwise), and ends with a line of ``name=value`` figures; this script reads those lines
and checks each figure against its goal. The exit code is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# benchmark -> (script and arguments, [(figure, goal as text, check)])
BENCHES: dict[str, tuple[list[str], list[tuple[str, str, object]]]] = {
    "teacher": (
        ["teacher_throughput.py"],
        [
            ("ratio_vs_plain", ">= 0.95", lambda v: v >= 0.95),
            ("ratio_spread", "(max - min of the per-run ratios)", None),
            ("cache_speedup", ">= 50", lambda v: v >= 50),
        ],
    ),
    "rate_limit": (
        ["teacher_rate_limit.py"],
        [
            ("adaptive_share", ">= 0.90", lambda v: v >= 0.90),
            ("adaptive_failed", "= 0", lambda v: v == 0),
            ("fixed64_share", "(reference)", None),
            ("fixed64_failed", "(reference)", None),
        ],
    ),
    "training": (
        ["train_overhead.py"],
        [("overhead_ratio", "<= 1.05", lambda v: v <= 1.05), ("overhead_spread", "(min-max of the runs)", None)],
    ),
    "generation": (["generation.py"], [("batched_speedup", ">= 5", lambda v: v >= 5)]),
    "real_training": (  # SmolLM2-135M-Instruct: the train_sft step vs plain TRL, padding, FLOP/s, generation
        ["train_real.py"],
        [
            ("sft_ratio", "<= 1.05 (train_sft step in ZenML / plain TRL, time)", lambda v: v <= 1.05),
            ("sft_ratio_spread", "(max - min of the per-round ratios)", None),
            ("pad_random", "(pad share, random batches)", None),
            ("pad_grouped", "(pad share, length-grouped batches: the default)", None),
            ("mfu_loop", ">= 0.5 (4·N FLOP per trained token / matmul peak)", lambda v: v >= 0.5),
            ("mfu_end_to_end", "(the same, the step's whole time)", None),
            ("gen_speedup", "(batched / one at a time)", None),
            ("gen_identical", "= 1 (greedy replies, batched vs one at a time)", lambda v: v == 1),
        ],
    ),
    "real_serving": (  # SmolLM2-135M-Instruct served: continuous batching vs in-process generate(), TTFT, limits
        ["serve_real.py"],
        [
            ("c1_tok_s", "(1 chat)", None),
            ("c8_tok_s", "(8 concurrent)", None),
            ("c32_tok_s", "(32 concurrent)", None),
            ("c32_vs_inproc", ">= 0.8 (server / in-process generate(), one batch of 32)", lambda v: v >= 0.8),
            ("c8_ttft_p50_ms", "(8 sent at once)", None),
            ("c32_ttft_p99_ms", "(32 sent at once)", None),
            ("late_ttft_ratio", "<= 2 (a chat joining 7 mid-reply / a lone chat, TTFT)", lambda v: v <= 2.0),
            ("late_others_running", "= 1 (the 7 still mid-reply at its first token)", lambda v: v == 1),
            ("serve_identical", "= 1 (greedy replies, server vs in-process)", lambda v: v == 1),
            ("c1_vs_limit", "(1 chat / weight bytes over the memory bandwidth)", None),
            ("c32_vs_limit", "(32 chats / the bandwidth and compute limit)", None),
            ("bf16_c1_tok_s", "(1 chat, serve --dtype bfloat16, transformers' forward)", None),
            ("packed_c1_tok_s", "(1 chat, bfloat16, our packed pass: decoder auto)", None),
            ("packed_c8_tok_s", "(8 concurrent, bfloat16, packed)", None),
            ("bf16_identical", "(bfloat16 replies identical to float32's, of 20)", None),
            ("packed_identical", "(packed replies identical to transformers' bfloat16 ones, of 20)", None),
            ("int8_c1_tok_s", "(1 chat, serve --dtype int8)", None),
            ("int8_identical", "(int8 replies identical to float32's, of 20)", None),
            ("c1_f32_vs_llamacpp", "(1 chat float32 / llama.cpp, fastest GGUF)", None),
            ("c1_bf16_vs_llamacpp", "(1 chat bfloat16 packed / llama.cpp, fastest GGUF)", None),
            ("c1_vs_llamacpp", ">= 0.5 (1 chat, fastest served / llama.cpp, fastest GGUF)", lambda v: v >= 0.5),
            ("c8_vs_llamacpp", "> 1 (8 concurrent packed / llama.cpp, fastest GGUF, 1 chat)", lambda v: v > 1.0),
        ],
    ),
    "serve_switch": (
        ["serve_switch.py"],
        [
            ("switch_requests", "(8 clients through promote, rollback, promote)", None),
            ("switch_failures", "= 0", lambda v: v == 0),
            ("switch_max_lag_s", "<= lag_bound_s (poll_s + 10 s)", lambda v: v <= 11.0),
            ("switch_stale", "= 0 (old version after the new one answered)", lambda v: v == 0),
            ("switch_p50_ms", "(during the moves)", None),
            ("switch_p99_ms", "(during the moves)", None),
            ("c8_p50_ms", "(8 concurrent)", None),
            ("c8_p99_ms", "(8 concurrent)", None),
            ("c32_p50_ms", "(32 concurrent)", None),
            ("c32_p99_ms", "(32 concurrent)", None),
            ("inproc_8_ms", "(generate(), one batch of 8)", None),
            ("inproc_32_ms", "(generate(), one batch of 32)", None),
            ("c8_vs_inproc", "(p50 at 8 / in-process batch of 8)", None),
            ("c32_vs_inproc", "(p50 at 32 / in-process batch of 32)", None),
        ],
    ),
    "scale": (
        ["scale.py"],
        [
            *[
                (f"{stage}_ratio", "<= 1.2 (per-1k cost, 100k / 2k dialogues)", lambda v: v <= 1.2)
                for stage in ("ingest", "validation", "bootstrap", "sets", "warmup", "hashes", "lineage")
            ],
            ("judging_ratio", "<= 1.2 (a fixed 100 dialogues judged, 100k / 2k table)", lambda v: v <= 1.2),
            *[  # the same two sizes timed interleaved in the 100k process: the machine the same for both
                (f"{stage}_ratio_1proc", "<= 1.2 (100k / 2k, both timed in the 100k process)", lambda v: v <= 1.2)
                for stage in ("ingest", "validation", "bootstrap", "sets", "warmup", "judging", "hashes", "lineage")
            ],
            ("peak_rss_gib", "<= 4 (at 100k dialogues)", lambda v: v <= 4.0),
            ("cache_lookup_ratio", "(reply-cache lookup, 100k / 2k)", None),
            ("reference_ratio", "(the same fixed work in each size's process, 100k / 2k)", None),
            ("reference_ratio_1proc", "(the same fixed work, twice in the 100k process)", None),
            ("reference_spread", "(the same fixed work, slowest / fastest process)", None),
        ],
    ),
    "demo": (
        ["demo_times.py"],
        [
            ("demo_cold_s", "<= 300", lambda v: v <= 300),
            ("demo_cached_s", "<= 60", lambda v: v <= 60),
            ("serve_p50_ms", "(200 chats, 8 at a time)", None),
            ("serve_p99_ms", "(200 chats, 8 at a time)", None),
            ("serve_errors", "= 0", lambda v: v == 0),
            ("burst_refused", "> 0 (429 beyond the limit)", lambda v: v > 0),
            ("burst_other_errors", "= 0", lambda v: v == 0),
            ("serve_up_after", "= 1", lambda v: v == 1),
        ],
    ),
}

# benchmarks whose own table (all but its last, figures line) is printed as it finishes
SHOWN = {"scale"}


def figures(output: str) -> dict[str, float]:
    found = {}
    for name, value in re.findall(r"(\w+)=(-?[\d.]+)", output):
        found[name] = float(value)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmarks: " + ", ".join(BENCHES))
    args = parser.parse_args()
    chosen = [b for b in BENCHES if not args.only or b in args.only.split(",")]
    rows, missed = [], 0
    for name in chosen:
        script, goals = BENCHES[name]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / script[0]), *script[1:]], capture_output=True, text=True)
        took = time.perf_counter() - start
        print(f"{name}: {script[0]} finished in {took:.0f} s (exit {proc.returncode})", flush=True)
        found = figures(proc.stdout) if proc.returncode == 0 else {}
        if proc.returncode != 0:
            print(proc.stdout[-1500:] + proc.stderr[-1500:], file=sys.stderr)
        elif name in SHOWN:  # its own table: the per-size figures behind the ratios below
            print("\n".join(proc.stdout.rstrip().splitlines()[:-1]), flush=True)
        for figure, goal, check in goals:
            value = found.get(figure)
            if value is None and "llamacpp" in figure and proc.returncode == 0:
                verdict = "skipped (no llama.cpp: make llamacpp builds it)"
            elif value is None:
                verdict = "FAIL (not measured)"
            elif check is None:
                verdict = ""
            else:
                verdict = "pass" if check(value) else "FAIL"
            missed += verdict.startswith("FAIL")
            rows.append((f"{name}.{figure}", "-" if value is None else f"{value:g}", goal, verdict))
    width = [max(len(r[i]) for r in [("figure", "value", "goal", "result"), *rows]) for i in range(4)]
    line = " | ".join
    print()
    print(line(h.ljust(w) for h, w in zip(("figure", "value", "goal", "result"), width)))
    print(line("-" * w for w in width))
    for row in rows:
        print(line(c.ljust(w) for c, w in zip(row, width)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
