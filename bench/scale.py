"""Cost per dialogue from 2,000 to 100,000 dialogues: every stage that needs no GPU, at each size, side by side.

    .venv/bin/python bench/scale.py [--sizes 2000,10000,50000,100000] [--judge-dialogues 100]

The datasets are made here, in a temporary folder, from the real file (``../shared/data/llms_vs_humans.csv``):
dialogues resampled with a seed, and every text perturbed (one word of each text dropped or repeated, a filler
word inserted) so that no two rows are identical; nothing is written into the repository. Each size runs in a
fresh process (its peak RSS is its own) against a fresh loopback teacher (no latency: the client, the cache
and the bookkeeping are measured, not a server). Stages, as the pipeline runs them:

- ingest: reading the file (streamed), repeated until 5 s of it are timed, the median counting;
- validation: the row checks, Great Expectations, the split and the data hash;
- bootstrap: ``improve_llm`` + ``all_three`` over every train dialogue (real request counts, the SQLite reply
  cache filling as it goes); repeated with an empty cache until a minute of it has been timed (four passes at
  2k in the last run, one from 10k up), the median pass counting;
- sets: building the SFT rows and DPO pairs and validating them (GX, leakage);
- warmup: the tiny student's warm-up corpus (every train text checked against the excluded texts);
- judging: the scorer (fitted once, on the real file) on a fixed number of test dialogues, with the join against
  the whole table (three times, the encoder's text cache emptied before each, the fastest counting);
- hashes: the file fingerprint, the table digest and the retrain input hashes;
- lineage: re-hashing the data as ``lineage --verify`` does;
- reference: not a stage, the same fixed work at every size (20,000 synthetic texts normalized and their word
  pairs counted, the warm-up's mix), timed in each size's process: what the process and the machine add to
  identical work (a larger heap, a shared machine's noise), so that a missed ratio can be told apart from an
  algorithm that grows.

The largest size's process also runs every stage on the smallest size's file, its runs dealt around the largest
one's (``spread``): the two sizes timed in one process, minutes apart at most. Two processes half an hour apart on
this shared machine ran the same reference work 0.32 to 0.55 s; in one process, interleaved, that drift reaches
both sizes alike. Sets, warm-up, hashes and lineage are timed until 3 s of each, the median counting.

Printed: seconds per 1,000 dialogues per stage and size (judging: seconds, its work is fixed), the ratio largest /
smallest size with each in its own process, the same ratio with both timed interleaved in the largest's process
(``1 proc``; goal <= 1.2 for both; a stage that misses is named with the reference's figures and, when only across
processes, the one-process ratio beside its own), each size's peak RSS (goal <= 4 GiB at the largest), the reply
cache's size and its lookup time. The last line holds ``name=value`` figures for ``bench/run_all.py``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL = ROOT.parent / "shared" / "data" / "llms_vs_humans.csv"
STAGES = ["ingest", "validation", "bootstrap", "sets", "warmup", "judging", "hashes", "lineage", "reference"]
FIXED = {"judging", "reference"}  # a fixed amount of work at every size: seconds, not seconds per 1,000
GOAL = 1.2
BOOTSTRAP_MIN_S = 60.0  # timed bootstrap work per size: passes are repeated until it is reached (the median counts)
BOOTSTRAP_MAX_PASSES = 5
INGEST_MIN_S = 5.0  # timed reading per size (about 80 reads at 2k, 3 at 100k), the median counting
STAGE_MIN_S = 3.0  # the same for sets, warm-up, hashes and lineage: a 2 ms stage at 2k is a handful of blinks
MAX_REPEATS = 200
FILLERS = ["really", "just", "truly", "quite", "so", "honestly", "simply", "actually", "very", "still"]
TEXT_COLUMNS = ("situation", "speaker_uttr", "response_")


def perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) > 3:
        i = rng.randrange(len(words))
        if rng.random() < 0.5:
            del words[i]
        else:
            words.insert(i, words[i])
    words.insert(rng.randrange(len(words) + 1), rng.choice(FILLERS))
    return " ".join(words)


def make_dataset(size: int, out: Path, seed: int = 0) -> Path:
    """``size`` dialogues resampled from the real file, each text perturbed; new dialogue ids."""
    import pandas as pd

    real = pd.read_csv(REAL)
    rng = random.Random(seed)
    picks = real.iloc[[rng.randrange(len(real)) for _ in range(size)]].reset_index(drop=True)
    text_cols = [c for c in picks.columns if c.startswith(TEXT_COLUMNS)]
    for col in text_cols:
        picks[col] = [perturb(str(v), rng) if isinstance(v, str) else v for v in picks[col]]
    picks["dialog_id"] = [f"scale:{seed}:{i}" for i in range(size)]
    picks.to_csv(out, index=False)
    return out


def fit_once(scorer_cache: Path):
    """The scorer fitted on the real file's train split (cached in ``scorer_cache``)."""
    from empathy_distill.config import DataConfig, ValidationConfig
    from empathy_distill.data.ingest import ingest
    from empathy_distill.judging.scorer import fit_scorer

    data = DataConfig(path=str(REAL), format="llms_vs_humans", split={"method": "paper"})
    return fit_scorer(ingest(REAL, data, ValidationConfig()).table, cache_dir=scorer_cache)


def reference_work(texts: int = 20_000, seed: int = 7):
    """The same fixed work at every size: normalizing texts and counting their word pairs, the warm-up's mix.

    Timed in each size's process beside the stages, it measures what the process and the machine add to identical
    work (a 3 GiB heap of the table's strings at 100k against 0.4 GiB at 2k; a shared machine's noise), not an
    algorithm's growth: a stage that misses the goal by no more than this moves is not shown to grow."""
    from collections import Counter

    from empathy_distill.training.warmup import _gc_paused, normalize

    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(5_000)]
    corpus = [" ".join(rng.choice(vocab) for _ in range(rng.randint(8, 40))) for _ in range(texts)]

    @_gc_paused
    def work() -> int:
        units = [normalize(t) for t in corpus]
        pairs = [set(zip(words, words[1:])) for words in (u.split(" ") for u in units)]
        return len(Counter(p for ps in pairs for p in ps))

    return work


def spread(main, small, factor: float, repeat: int = 1, min_s: float = 0.0, cap: int = MAX_REPEATS, collect=False):
    """Times ``main`` and, when given, ``small`` in the same window: the small's runs spread evenly around the main's.

    Each is run until it has ``repeat`` runs and ``min_s`` seconds of them (at most ``cap`` runs). The small one
    runs first; its time, scaled by ``factor`` (the sizes' ratio), gives how many runs the main will take, and the
    small's runs are dealt over the gaps before, between and after them (``S S L S S S`` for five 2k bootstrap
    passes, a run of the 2k or more between each 100k run for the other stages), so that a machine slowing down in
    the middle reaches both. Returns each one's run times and last result."""
    times: dict[str, list[float]] = {"main": [], "small": []}
    values: dict[str, object] = {}
    fns = {"main": main, "small": small}

    def run(label: str) -> None:
        values[label] = None  # the last run's result is not held while the next one is built
        start = time.perf_counter()
        values[label] = fns[label]()
        times[label].append(time.perf_counter() - start)
        if collect:
            gc.collect()

    def needed(t: float) -> int:
        return min(cap, max(repeat, math.ceil(min_s / t) if min_s and t > 0 else repeat))

    def done(label: str) -> bool:
        ts = times[label]
        return len(ts) >= repeat and (sum(ts) >= min_s or len(ts) >= cap)

    if small is not None:
        run("small")
        n_small, gaps = needed(times["small"][0]), needed(times["small"][0] * factor) + 1
        deal = [n_small * (g + 1) // gaps - n_small * g // gaps for g in range(gaps)]
        if deal[0] == 0:  # the run above is before the main's first: one fewer in the last gap that has any
            deal[max(g for g, n in enumerate(deal) if n)] -= 1
            deal[0] = 1
        for g, count in enumerate(deal):
            for _ in range(count - (g == 0)):
                run("small")
            if g < gaps - 1:
                run("main")
    for label in ("main", "small") if small is not None else ("main",):
        while not done(label):  # an estimate short of the count: each one reaches its own
            run(label)
    return times, values


def one_size(
    data: Path, teacher_url: str, work: Path, judge_dialogues: int, scorer_cache: Path, small: Path | None = None
) -> dict:
    """Every stage on one dataset, in this process; seconds per stage, counts, cache figures and peak RSS.

    With ``small`` (the smallest size's file, given to the largest size's process): every stage is also run on it,
    in this process and interleaved with this size's runs (see ``spread``), so that the ratio between the two sizes
    is also measured where the machine and the process are the same for both (``seconds_small``)."""
    import pandas as pd

    from empathy_distill.config import (
        BootstrapConfig,
        DataConfig,
        DistillConfig,
        EvaluationConfig,
        TeacherConfig,
        ValidationConfig,
    )
    from empathy_distill.data.hashing import file_fingerprint, table_digest
    from empathy_distill.data.ingest import read_dialogues, validate_dialogues
    from empathy_distill.judging.judges import ScorerJudge
    from empathy_distill.judging.protocol import evaluate, evaluation_frame
    from empathy_distill.registry.inputs import input_hashes
    from empathy_distill.stages import rewrite_stage, training_sets_stage, validate_sets_stage
    from empathy_distill.teacher import build_teacher
    from empathy_distill.teacher.cache import ReplyCache
    from empathy_distill.training.warmup import build_warmup_corpus

    paths = {"main": data, **({"small": small} if small is not None else {})}
    seconds: dict[str, dict[str, float]] = {label: {} for label in paths}
    runs: dict[str, dict[str, list[float]]] = {label: {} for label in paths}
    factor = data.stat().st_size / small.stat().st_size if small is not None else 1.0  # dialogues, once read

    def timed(name: str, fn, repeat: int = 1, min_s: float = 0.0, cap: int = MAX_REPEATS, collect=False):
        """``fn(label)`` for each dataset (the small one's runs spread around the main's). Without ``min_s``: the
        fastest of ``repeat`` runs (a stage of a fraction of a second at 2k is within the noise otherwise). With it:
        runs until ``min_s`` seconds of them are timed and the median counts, so a small size is not a handful of
        blinks. Returns each dataset's last result."""
        times, values = spread(
            lambda: fn("main"),
            (lambda: fn("small")) if small is not None else None,
            factor,
            repeat,
            min_s,
            cap,
            collect,
        )
        for label in paths:
            seconds[label][name] = statistics.median(times[label]) if min_s else min(times[label])
            runs[label][name] = times[label]
        return values

    cfgs = {
        label: DataConfig(path=str(p), format="llms_vs_humans", split={"method": "paper"}) for label, p in paths.items()
    }
    validation = ValidationConfig()
    raw = timed("ingest", lambda label: list(read_dialogues(paths[label], "llms_vs_humans")), 3, INGEST_MIN_S)
    tables = timed("validation", lambda label: validate_dialogues(*raw[label], cfgs[label], validation).table)
    raw.clear()  # the pipeline's validate step returns the table; the raw rows are not kept after it
    gc.collect()
    if small is not None:
        factor = tables["main"]["dialogue_id"].nunique() / tables["small"]["dialogue_id"].nunique()
    bootstraps = {}
    for label, table in tables.items():
        train = table.loc[table["split"] == "train", "dialogue_id"].nunique()
        bootstraps[label] = BootstrapConfig(
            method="improve_llm", strategy="all_three", sft_dialogues=train // 2, dpo_dialogues=train - train // 2
        )
    os.environ["SCALE_BENCH_KEY"] = "not-a-secret"
    teacher_cfgs: dict[str, TeacherConfig] = {}
    passes = itertools.count()  # each pass's own, empty reply cache

    def bootstrap_pass(label: str):
        # each pass with an empty reply cache (every request sent), until a minute of work has been timed: one
        # pass of 12 s at 2k moved by a third between runs on this shared machine, one of 12 min at 100k averages
        cache_path = work / f"teacher-{label}-{next(passes)}.sqlite"
        teacher_cfgs[label] = TeacherConfig(
            base_url=teacher_url,
            model="loop",
            cache_path=str(cache_path),
            concurrency=64,
            api_key_env="SCALE_BENCH_KEY",
        )
        return rewrite_stage(tables[label], bootstraps[label], build_teacher(teacher_cfgs[label]))

    rewritten = timed("bootstrap", bootstrap_pass, 1, BOOTSTRAP_MIN_S, BOOTSTRAP_MAX_PASSES, collect=True)
    logs = {label: log for label, (log, _) in rewritten.items()}
    report = rewritten["main"][1]

    def sets(label: str):
        sft_rows, dpo_pairs = training_sets_stage(tables[label], logs[label], bootstraps[label])
        return validate_sets_stage(tables[label], sft_rows, dpo_pairs, bootstraps[label], validation)

    built = timed("sets", sets, 3, STAGE_MIN_S)
    sft, dpo, _, sets_report = built["main"]
    corpora = timed("warmup", lambda label: build_warmup_corpus(tables[label], list(built[label][:2])), 3, STAGE_MIN_S)
    reference = reference_work()
    timed("reference", lambda label: reference(), 3)  # in the process state the warm-up ran in: what it adds

    # the scorer was fitted once, on the real file (cached, see fit_once): what grows with the table is the join
    scorer = fit_once(scorer_cache)
    scorer.verdicts(["warm up"], ["the encoder"], ["loads here"])  # loading MiniLM is not judging
    picks = {}
    for label, table in tables.items():
        test = table[table["split"] == "test"]
        ids = test["dialogue_id"].drop_duplicates().head(judge_dialogues)
        picks[label] = test[test["dialogue_id"].isin(ids)]

    def judging(label: str):
        scorer.encoder._cache.clear()  # each run encodes its texts afresh: the same work every time
        replies = picks[label].pivot_table(index="dialogue_id", columns="source", values="response", aggfunc="first")
        generations = pd.DataFrame(
            {
                "dialogue_id": replies.index,
                "tuned_response": replies.get("chatgpt", replies.iloc[:, 0]).to_numpy(),
                "base_response": replies.get("llama", replies.iloc[:, -1]).to_numpy(),
            }
        )
        frame = evaluation_frame(generations, tables[label])
        return evaluate(frame, [ScorerJudge(scorer)], {"base": "base_response"})

    judged = timed("judging", judging, 3)["main"]
    configs = {
        label: DistillConfig(
            data=cfgs[label], teacher=teacher_cfgs[label], evaluation=EvaluationConfig(cache_dir=str(scorer_cache))
        )
        for label in paths
    }
    timed(
        "hashes",
        lambda label: (table_digest(tables[label]), input_hashes(configs[label], file_fingerprint(paths[label]))),
        3,
        STAGE_MIN_S,
    )
    timed("lineage", lambda label: file_fingerprint(paths[label]), 3, STAGE_MIN_S)

    cache_path = Path(teacher_cfgs["main"].cache_path)
    cache = ReplyCache(cache_path, teacher_url)
    keys = [k for (k,) in cache._db.execute("SELECT key FROM replies ORDER BY RANDOM() LIMIT 2000")]
    start = time.perf_counter()
    for key in keys:
        cache._db.execute("SELECT text FROM replies WHERE key=?", (key,)).fetchone()
    lookup_us = (time.perf_counter() - start) / max(len(keys), 1) * 1e6
    table = tables["main"]
    out = {
        "dialogues": int(table["dialogue_id"].nunique()),
        "rows": len(table),
        "seconds": seconds["main"],
        "teacher_requests": report.teacher_requests,
        "sft_rows": len(sft),
        "dpo_pairs": len(dpo),
        "warmup_chats": len(corpora["main"].chats),
        "judged": judged.comparisons[0].judged,
        "test_leakage": sets_report.test_leakage,
        "cache_entries": len(cache),
        "cache_mb": cache_path.stat().st_size / 2**20,
        "cache_lookup_us": lookup_us,
        "bootstrap_passes": runs["main"]["bootstrap"],
        "ingest_reads": len(runs["main"]["ingest"]),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if small is not None:
        out.update(
            small_dialogues=int(tables["small"]["dialogue_id"].nunique()),
            seconds_small=seconds["small"],
            small_bootstrap_passes=runs["small"]["bootstrap"],
            small_ingest_reads=len(runs["small"]["ingest"]),
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,10000,50000,100000")
    parser.add_argument("--judge-dialogues", type=int, default=100)
    parser.add_argument("--one", nargs=5, metavar=("DATA", "URL", "WORK", "JUDGE", "SCORER"), help=argparse.SUPPRESS)
    parser.add_argument("--small", help=argparse.SUPPRESS)  # with --one: the smallest size's file, interleaved
    args = parser.parse_args()
    if args.one:
        data, url, work, judge, scorer = args.one
        small = Path(args.small) if args.small else None
        print(json.dumps(one_size(Path(data), url, Path(work), int(judge), Path(scorer), small)))
        return 0
    if not REAL.exists():
        print(f"scale: skipped, the real file is not at {REAL}")
        return 0
    from _common import start_loopback

    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        tmp_path = Path(tmp)
        subprocess.run(  # the scorer's fit, in a process of its own: not in any size's time or memory
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import scale; "
                f"scale.fit_once(scale.Path({str(tmp_path / 'scorer')!r}))",
            ],
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
            capture_output=True,
        )
        for size in sizes:
            data = make_dataset(size, tmp_path / f"dialogues-{size}.csv")
            work = tmp_path / f"work-{size}"
            work.mkdir()
            proc, url = start_loopback()
            try:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        str(data),
                        url,
                        str(work),
                        str(args.judge_dialogues),
                        str(tmp_path / "scorer"),
                        # the largest size's process also runs the smallest size's file, interleaved with its own
                        *(
                            ["--small", str(tmp_path / f"dialogues-{sizes[0]}.csv")]
                            if size == sizes[-1] != sizes[0]
                            else []
                        ),
                    ],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            finally:
                proc.terminate()
                proc.wait()
            if out.returncode != 0:
                print(f"scale: size {size} failed: {out.stderr.strip().splitlines()[-3:]}")
                return 1
            results[size] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[size]
            print(
                f"  {size:>7,} dialogues: {r['rows']:,} rows, {r['teacher_requests']:,} teacher requests, "
                f"{r['sft_rows']:,} SFT rows, {r['dpo_pairs']:,} DPO pairs, {r['warmup_chats']:,} warm-up chats, "
                f"peak RSS {r['peak_rss_gib']:.2f} GiB; ingest read {r['ingest_reads']} times"
                + (
                    f"; bootstrap passes {', '.join(f'{p:.1f}' for p in r['bootstrap_passes'])} s (the median counts)"
                    if len(r["bootstrap_passes"]) > 1
                    else ""
                ),
                flush=True,
            )
            if "seconds_small" in r:
                print(
                    f"  {r['small_dialogues']:>7,} dialogues in the {size:,} process, interleaved with it: ingest read "
                    f"{r['small_ingest_reads']} times; bootstrap passes "
                    f"{', '.join(f'{p:.1f}' for p in r['small_bootstrap_passes'])} s",
                    flush=True,
                )
    return report(sizes, results)


def report(sizes: list[int], results: dict[int, dict]) -> int:
    small, large = sizes[0], sizes[-1]
    same = results[large].get("seconds_small")  # the smallest size timed again in the largest size's process
    head = f"{'stage':<11}" + "".join(f"{f'{s:,}':>10}" for s in sizes) + f"{'ratio':>8}"
    print("\nseconds per 1,000 dialogues (judging: seconds for a fixed number of dialogues)")
    if same:
        print(
            f"ratio: {large:,} / {small:,}, each size in its own process; 1 proc: the same, both sizes timed "
            f"interleaved in the {large:,} process ({small:,} there: {small:,}@1)"
        )
        head += f"{f'{small:,}@1':>10}{'1 proc':>8}"
    print(head + "  goal")
    figures, missed, grows = {}, [], []
    for stage in STAGES:
        per = []
        for s in sizes:
            sec = results[s]["seconds"][stage]
            per.append(sec if stage in FIXED else sec / (results[s]["dialogues"] / 1000))
        ratio = per[-1] / per[0] if per[0] > 0 else float("inf")
        figures[f"{stage}_ratio"] = ratio
        row = f"{stage:<11}" + "".join(f"{v:>10.3f}" for v in per) + f"{ratio:>8.2f}"
        ok = ratio <= GOAL
        if same:
            there = same[stage] if stage in FIXED else same[stage] / (results[large]["small_dialogues"] / 1000)
            one = per[-1] / there if there > 0 else float("inf")
            figures[f"{stage}_ratio_1proc"] = one
            row += f"{there:>10.3f}{one:>8.2f}"
            grows += [stage] if one > GOAL and stage != "reference" else []
            ok = ok and one <= GOAL
        verdict = "(the same work at every size)" if stage == "reference" else "ok" if ok else "MISSED"
        missed += [stage] if verdict == "MISSED" else []
        print(f"{row}  {verdict}")
    print(f"{'peak RSS':<11}" + "".join(f"{results[s]['peak_rss_gib']:>9.2f}G" for s in sizes) + "          <= 4 GiB")
    print(f"{'cache MB':<11}" + "".join(f"{results[s]['cache_mb']:>10.1f}" for s in sizes))
    print(f"{'lookup us':<11}" + "".join(f"{results[s]['cache_lookup_us']:>10.1f}" for s in sizes))
    print(f"{'cache rows':<11}" + "".join(f"{results[s]['cache_entries']:>10,}" for s in sizes))
    reference = figures["reference_ratio"]
    refs = [results[s]["seconds"]["reference"] for s in sizes]
    # the same fixed work in every size's process: its largest / smallest is how far the machine itself moved
    # between processes in this run (between the 2k and 100k processes alone it can look steady by chance)
    spread = max(refs) / min(refs)
    figures["reference_spread"] = spread
    for stage in missed:  # the stage, and what the same fixed work did in the same processes
        ratio = figures[f"{stage}_ratio"]
        if stage in grows:  # measured with the machine and the process the same for both sizes: it grows
            print(
                f"{stage}: grows: {figures[f'{stage}_ratio_1proc']:.2f} > {GOAL} with both sizes timed interleaved "
                f"in one process (so not the machine moving between processes); {ratio:.2f} across processes"
            )
            continue
        within = abs(math.log(ratio)) <= max(abs(math.log(reference)), math.log(spread))
        print(
            f"{stage}: ratio {ratio:.2f} > {GOAL} across processes; the reference (the same fixed work in each "
            f"size's process) measured {reference:.2f} between these two sizes and {min(refs):.3f} to "
            f"{max(refs):.3f} s across all ({spread:.2f} apart), so this is {'within' if within else 'beyond'} what "
            f"the machine itself varied"
            + (
                f"; with both sizes timed interleaved in the {large:,} process: {figures[f'{stage}_ratio_1proc']:.2f}"
                f" (<= {GOAL}: measured in one process, the stage does not grow)"
                if same
                else ""
            )
        )
    figures.update(
        peak_rss_gib=results[large]["peak_rss_gib"],
        cache_lookup_ratio=results[large]["cache_lookup_us"] / max(results[small]["cache_lookup_us"], 1e-9),
        largest=large,
    )
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
