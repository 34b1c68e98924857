"""A real local LLM as the teacher, offline: SmolLM2-135M-Instruct behind ``serve --base``, through the openai client.

    .venv/bin/python bench/local_teacher.py [--config configs/local-teacher.yaml] [--base smollm2-135m-instruct]

Starts ``empathy-distill serve --base`` on a free port, then runs the bootstrap without ZenML
(``standalone.sets_to_folder``, what ``bootstrap --out`` runs) for improve_llm and improve_human with the naive,
identify_lacking and sequential strategies on the config's slice of the real file, one after another, the teacher
cache shared (an improve_llm first draft is asked once for all three strategies). Prints, per run: dialogues planned,
kept, invalid with their reasons, failed; teacher requests, cache hits and tokens (the server's own counts); the
kept rewrites' length in words against the paper's guidance (about 28 on average, at most 97); the sets' rows and
quarantine (rows in = kept + quarantined); seconds. Then the teacher check (``teacher-check``: the config's method
and strategy on ``--check-dialogues``, judged by the offline judges) and the same model calibrated as an LLM judge
on ``--judge-pairs`` rated pairs (parse rate, first-position share, ties, agreement with the human ratings) with the
admission it would get. Last, a few rewrites beside their originals, to read by eye.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from _common import ROOT

RUNS = [
    (method, strategy)
    for method in ("improve_llm", "improve_human")
    for strategy in ("naive", "identify_lacking", "sequential")
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "local-teacher.yaml"))
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "local-teacher"))
    parser.add_argument("--runs", default="all", help="all, or method:strategy[,method:strategy...]")
    parser.add_argument("--check-dialogues", type=int, default=30, help="the teacher check's sample")
    parser.add_argument("--judge-pairs", type=int, default=200, help="rated pairs for the LLM judge's calibration")
    parser.add_argument("--skip-check", action="store_true", help="bootstraps only: no teacher check, no calibration")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pandas as pd

    from deploy.client import start_base, stop, wait_ready
    from empathy_distill.config import load_config
    from empathy_distill.standalone import sets_to_folder
    from empathy_distill.teacher.types import TeacherError
    from tests.services import free_port

    runs = RUNS if args.runs == "all" else [tuple(r.split(":")) for r in args.runs.split(",")]
    port = free_port()
    log_path = Path(args.out) / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = start_base(args.base, port, log_path, ROOT)
    url = f"http://127.0.0.1:{port}"
    rows = []
    samples = []
    try:
        started = time.monotonic()
        wait_ready(url, 600, proc)
        print(f"serve --base {args.base}: ready in {time.monotonic() - started:.0f} s at {url}", flush=True)
        for method, strategy in runs:
            overrides = [f"bootstrap.method={method}", f"bootstrap.strategy={strategy}", f"teacher.base_url={url}/v1"]
            config = load_config(args.config, overrides)
            out = Path(args.out) / f"{method}-{strategy}"
            start = time.monotonic()
            try:
                report = sets_to_folder(config, out)
                failed = None
            except TeacherError as exc:
                report = json.loads((out / "report.json").read_text())
                failed = str(exc)
            seconds = time.monotonic() - start
            log = pd.read_parquet(out / "bootstrap_log.parquet")
            kept = log[log["status"] == "ok"]
            words = [len(str(t).split()) for t in kept["improved"]]
            usage = report["teacher_usage"]
            quarantined = sum(1 for line in (out / "quarantine.jsonl").read_text().splitlines() if line.strip())
            rows.append(
                {
                    "run": f"{method} / {strategy}",
                    "planned": report["sft_dialogues_planned"] + report["dpo_dialogues_planned"],
                    "ok": report["dialogues_ok"],
                    "invalid": report["dialogues_invalid"],
                    "failed": report["dialogues_error"],
                    "reasons": report["not_ok_reasons"],
                    "requests": usage["requests"],
                    "cache_hits": usage["cache_hits"],
                    "tokens_in": usage["prompt_tokens"],
                    "tokens_out": usage["completion_tokens"],
                    "words_mean": statistics.mean(words) if words else 0.0,
                    "words_p50": statistics.median(words) if words else 0.0,
                    "words_max": max(words) if words else 0,
                    "sets": f"SFT {report['sft_rows_in']} in, {report['sft_rows']} kept; "
                    f"DPO {report['dpo_pairs_in']} in, {report['dpo_pairs']} kept; "
                    f"{report['rows_quarantined']} quarantined ({quarantined} lines in quarantine.jsonl) "
                    f"{report['quarantine_reasons']}",
                    "seconds": seconds,
                    "stopped": failed,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            samples += [(f"{method}/{strategy}", o, i) for o, i in zip(kept["original"][:2], kept["improved"][:2])]
        if not args.skip_check:
            check_and_calibrate(args, url)
    finally:
        stop(proc.pid)
    print()
    print(
        "| method / strategy | dialogues | kept | invalid | failed | requests (cache hits) | tokens in / out | words "
        "mean, median, max | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['planned']} | {r['ok']} | {r['invalid']} | {r['failed']} | {r['requests']} "
            f"({r['cache_hits']}) | {r['tokens_in']} / {r['tokens_out']} | {r['words_mean']:.1f}, "
            f"{r['words_p50']:.0f}, {r['words_max']} | {r['seconds']:.0f} |"
        )
    for r in rows:
        print(f"  {r['run']}: not kept {r['reasons']}" + (f"; stopped: {r['stopped']}" if r["stopped"] else ""))
        print(f"    sets: {r['sets']}")
    print("rewrites beside their originals:")
    for run, original, improved in samples[:8]:
        print(f"  [{run}]\n    original: {str(original)[:200]!r}\n    rewrite:  {str(improved)[:200]!r}")


def check_and_calibrate(args, url: str) -> None:
    """The teacher check (the config's method and strategy) and the calibration of the same model as an LLM judge,
    against the running server; the admission decision that calibration would give."""
    from empathy_distill.config import load_config
    from empathy_distill.data.ingest import ingest
    from empathy_distill.judging.admission import decide, judge_identity
    from empathy_distill.judging.calibration import calibrate_judge
    from empathy_distill.judging.judges import LLMJudge
    from empathy_distill.teacher import build_teacher
    from empathy_distill.teacher.check import run_check

    config = load_config(args.config, [f"teacher.base_url={url}/v1", f"teacher.check_dialogues={args.check_dialogues}"])
    table = ingest(config.data.path, config.data, config.validation).table
    start = time.monotonic()
    report, verdict = run_check(table, config.bootstrap, config.teacher, config.evaluation)
    print(f"teacher check, {time.monotonic() - start:.0f} s: {report.model_dump_json()}")
    print(verdict.line, flush=True)
    (judge_cfg,) = [j for j in config.evaluation.judges if j.kind == "llm"]
    judge_cfg = judge_cfg.model_copy(
        update={"endpoint": judge_cfg.endpoint.model_copy(update={"base_url": url + "/v1"})}
    )
    start = time.monotonic()
    judge = LLMJudge(build_teacher(judge_cfg.endpoint), name=judge_cfg.name, on_error="continue")
    found = calibrate_judge(table, judge, args.judge_pairs)
    print(f"LLM judge calibration, {time.monotonic() - start:.0f} s: {json.dumps(found)}")
    record = {
        "agreement": found["judge_accuracy"],
        "pairs": found["pairs"],
        "parse_rate": found["parse_rate"],
        "position_bias": found["position_bias"],
    }
    admitted = decide(judge_identity(judge_cfg), [record], config.evaluation.min_judge_agreement)
    print(("admitted: " if admitted["admitted"] else "not admitted: ") + admitted["reason"], flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
