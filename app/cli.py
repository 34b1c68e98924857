"""empathy-distill: distil empathy from a teacher LLM into a small student, with a gate before deployment.

Verbs, in the order of work: init, ingest, bootstrap, distill (alias run), evaluate, ablation, calibrate,
promote, rollback, lineage, serve, deploy, retrain, schedule; ``empathy-distill VERB --help`` shows each with examples.
Bad input ends with one line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence

from app.console import console_for, one_line, quiet_environment
from app.prepare import prepared
from app.registry_ops import lineage, promote, rollback, tracking_uri
from app.scheduling import schedule_lines
from app.serving_ops import gguf_export, serve, serve_base, vllm_lines
from app.stack import ensure_local_stack
from empathy_distill.config import load_config
from empathy_distill.data.schema import FORMATS
from empathy_distill.errors import ConfigError, InputError, JudgeError, StepFailed
from empathy_distill.judging.admission import decide, judge_identity, record_calibration, recorded_calibrations
from empathy_distill.teacher import build_teacher
from empathy_distill.teacher.types import TeacherError


def show(lines: Sequence[str], code: int = 0) -> int:
    """Prints a command's lines to stdout; returns its exit code."""
    for line in lines:
        print(line)
    return code


def _config(args: argparse.Namespace, *overrides: str):

    return load_config(args.config, [*overrides, *args.set])


# name -> function, one-line help, examples, whether --config is required, aliases; the order is the order of work
VERBS: dict[str, dict] = {}


def verb(name: str, summary: str, examples: str, needs_config: bool = False, aliases: tuple[str, ...] = ()):
    """Registers a ``cmd_*`` function as a subcommand: its docstring is the description, ``examples`` the epilog."""

    def register(func):
        VERBS[name] = {
            "func": func,
            "summary": summary,
            "examples": examples,
            "needs_config": needs_config,
            "aliases": aliases,
        }
        return func

    return register


@verb(
    "init",
    "register the ZenML stack with the MLflow tracker and registry (idempotent)",
    """\
  empathy-distill init                                   # local stack, embedded MLflow store
  empathy-distill init --tracking-uri http://mlflow.internal:5000
  empathy-distill init --stack-file configs/stacks/kubeflow.yaml --tracking-uri https://mlflow.internal""",
)
def cmd_init(args: argparse.Namespace) -> int:
    """Registers an MLflow experiment tracker and model registry and a stack that uses them, and activates it;
    running it again changes nothing. With --stack-file, the stack that file describes (orchestrator, artifact store,
    image builder)."""

    return show(ensure_local_stack(stack_name=args.stack, tracking_uri=args.tracking_uri, stack_file=args.stack_file))


@verb(
    "ingest",
    "read, validate and split a dialogue file into files (no ZenML)",
    """\
  empathy-distill ingest --data data/sample/dialogues.csv --out outputs/ingest
  empathy-distill ingest --data ../shared/data/llms_vs_humans.csv --format llms_vs_humans --out outputs/real""",
)
def cmd_ingest(args: argparse.Namespace) -> int:
    """Reads a dialogue file, checks every row, splits train/test by dialogue and writes dialogues.parquet,
    quarantine.jsonl (each rejected row with its reason) and report.json (rows in = kept + quarantined)."""

    config = _config(args, f"data.path={args.data}", f"data.format={args.format}")
    # import-time: empathy_distill.data.ingest loads pandas (0.35 s on every command, app.cli alone 0.3 s)
    from empathy_distill.data.ingest import ingest, require_rows, write_outputs

    result = ingest(config.data.path, config.data, config.validation)
    paths = write_outputs(result, args.out)
    print(result.report.model_dump_json(indent=2))
    require_rows(result)
    print(f"wrote {paths['dialogues']}, {paths['quarantine']}, {paths['report']}", file=sys.stderr)
    return 0


@verb(
    "bootstrap",
    "build the SFT rows and DPO pairs with the teacher (the bootstrap pipeline, or files with --out)",
    """\
  empathy-distill bootstrap --config configs/paper.yaml
  empathy-distill bootstrap --config configs/paper.yaml --set teacher.base_url=http://127.0.0.1:8000/v1 --out
  outputs/sets""",
    needs_config=True,
)
def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Ingestion, validation, the teacher's rewrites, the training sets and their validation: the bootstrap
    pipeline on the active stack, or with --out the same core functions without ZenML, results as files."""
    config = _config(args)
    if args.out is None:
        # import-time: app.runner 0.9 s to import (app.cli alone 0.5 s)
        from app.runner import run_pipeline

        return show(run_pipeline("bootstrap", config, enable_cache=not args.no_cache))
    # import-time: empathy_distill.standalone 0.8 s to import (app.cli alone 0.5 s)
    from empathy_distill.standalone import sets_to_folder

    print(json.dumps(sets_to_folder(config, args.out, use_cache=not args.no_cache), indent=2))
    return 0


@verb(
    "teacher-check",
    "before paying for the bootstrap: does the teacher's rewrite beat the reply it rewrites? (a sample, offline)",
    """\
  empathy-distill teacher-check --config configs/local-teacher.yaml
  empathy-distill teacher-check --config configs/paper.yaml --dialogues 50 --json""",
    needs_config=True,
)
def cmd_teacher_check(args: argparse.Namespace) -> int:
    """Rewrites a sample of train dialogues with the configured teacher, method and strategy, and judges each rewrite
    against its original with the offline judges in both orders: the rewrite's win rate and Wilson interval per judge,
    the parser's refusals, the lengths. Exit 0 when every interval lies above one half, 1 otherwise."""
    # import-time: empathy_distill.teacher.check 0.8 s to import (app.cli alone 0.5 s)
    from empathy_distill.teacher.check import run_check

    config = _config(args)
    if config.bootstrap.method == "direct":
        raise ConfigError("bootstrap.method is direct: no teacher to check (set improve_llm or improve_human)")
    config = prepared(config, needs_teacher=True, needs_student=False)
    teacher = config.teacher.model_copy(update={"check_dialogues": args.dialogues or config.teacher.check_dialogues})
    # import-time: empathy_distill.data.ingest loads pandas (0.35 s on every command, app.cli alone 0.3 s)
    from empathy_distill.data.ingest import ingest, require_rows

    data = ingest(config.data.path, config.data, config.validation)
    require_rows(data)
    report, verdict = run_check(data.table, config.bootstrap, teacher, config.evaluation)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        words = report.words
        print(
            f"teacher {config.teacher.model} ({config.bootstrap.method}/{config.bootstrap.strategy}): "
            f"{report.dialogues} dialogues, {report.kept} rewrites kept, {report.parse_failures} refused by "
            f"the parser {report.not_kept_reasons or ''}, {report.failed} failed; {report.teacher_requests} "
            f"requests; rewrites {words.rewrite_mean} words on average (at most {words.rewrite_max}; the "
            f"originals {words.original_mean}; guidance about {words.target_mean}, at most {words.limit})"
        )
    print(verdict.line)
    return 0 if verdict.passed else 1


@verb(
    "distill",
    "run the distill pipeline end to end: data, teacher, SFT, DPO, judging, registry, gate",
    """\
  empathy-distill distill --config configs/demo.yaml
  empathy-distill distill --config configs/paper.yaml --set student.model=Qwen/Qwen2.5-0.5B-Instruct
  empathy-distill run --config configs/demo.yaml --no-cache          # `run` is the same verb""",
    needs_config=True,
    aliases=("run",),
)
def cmd_distill(args: argparse.Namespace) -> int:
    """Runs the distill pipeline on the active ZenML stack: ingest, validate, bootstrap, build and validate the
    sets, prepare the student, SFT, DPO, generate, judge, register a version, gate it and (when configured) serve
    the champion. Prints the summary: win rates with intervals, the decision, the MLflow run."""
    # import-time: app.runner 0.9 s to import (app.cli alone 0.5 s)
    from app.runner import run_pipeline

    return show(run_pipeline("distill", _config(args), enable_cache=not args.no_cache))


@verb(
    "evaluate",
    "judge the latest generations again (the evaluate pipeline)",
    """\
  empathy-distill evaluate --config configs/demo.yaml
  empathy-distill evaluate --config configs/demo.yaml --generations-version 3 --set
  evaluation.max_invalid_fraction=0.05""",
    needs_config=True,
)
def cmd_evaluate(args: argparse.Namespace) -> int:
    """Judges a generations artifact again with the config's evaluation section (other judges, other
    thresholds) without training: a new report and an MLflow run of its own."""
    # import-time: app.runner 0.9 s to import (app.cli alone 0.5 s)
    from app.runner import run_evaluation_pipeline

    return show(run_evaluation_pipeline(_config(args), args.generations_version))


@verb(
    "ablation",
    "methods x strategies x (SFT, SFT+DPO) in one run, with the comparison table",
    """\
  empathy-distill ablation --config configs/ablation.yaml
  empathy-distill ablation --config configs/ablation.yaml --set ablation.strategies='[naive]'""",
    needs_config=True,
)
def cmd_ablation(args: argparse.Namespace) -> int:
    """Trains and judges one student per cell of the ablation grid in one pipeline run; shared work (ingestion,
    the student, each cell's bootstrap and SFT) is done once. Prints the comparison table."""
    # import-time: app.runner 0.9 s to import (app.cli alone 0.5 s)
    from app.runner import run_ablation

    return show(run_ablation(_config(args), enable_cache=not args.no_cache))


@verb(
    "calibrate",
    "judges' pairwise accuracy against human ratings, as deployed",
    """\
  empathy-distill calibrate --data ../shared/data/llms_vs_humans.csv
  empathy-distill calibrate --data ratings.jsonl --config configs/paper.yaml --max-pairs 200""",
)
def cmd_calibrate(args: argparse.Namespace) -> int:
    """How often each judge agrees with the human ratings on pairs of responses to the same dialogue: the
    offline scorer on held-out dialogue groups (its tie margin as deployed), each LLM judge in --config on a sample."""
    # import-time: empathy_distill.judging.scorer 0.8 s to import (app.cli alone 0.5 s)
    from empathy_distill.judging.scorer import calibrate

    config = _config(args, f"data.path={args.data}", f"data.format={args.format}")
    # import-time: empathy_distill.data.ingest loads pandas (0.35 s on every command, app.cli alone 0.3 s)
    from empathy_distill.data.ingest import ingest, require_rows

    data = ingest(config.data.path, config.data, config.validation)
    require_rows(data)
    result = calibrate(
        data.table, folds=args.folds, margin=config.evaluation.scorer_margin, l2=config.evaluation.scorer_l2
    )
    llm_judges = [j for j in config.evaluation.judges if j.kind == "llm"]
    if llm_judges:
        # import-time: empathy_distill.judging.calibration 0.8 s to import (app.cli alone 0.5 s)
        from empathy_distill.judging.calibration import calibrate_judge

        # import-time: empathy_distill.judging.judges 0.8 s to import (app.cli alone 0.5 s)
        from empathy_distill.judging.judges import LLMJudge

        result["llm_judges"] = []
        for j in llm_judges:
            judge = LLMJudge(build_teacher(j.endpoint), name=j.name, on_error=config.evaluation.on_judge_error)
            found = calibrate_judge(data.table, judge, args.max_pairs)
            identity = judge_identity(j)
            if not args.no_record:
                found["recorded_run"] = record_calibration(identity, found, tracking_uri())
            records = recorded_calibrations(identity["key"], tracking_uri())
            found["identity"] = identity
            found["admission"] = decide(identity, records, config.evaluation.min_judge_agreement)
            result["llm_judges"].append(found)
    print(json.dumps(result, indent=2))
    for found in result.get("llm_judges", []):
        print(("admitted: " if found["admission"]["admitted"] else "not admitted: ") + found["admission"]["reason"])
    return 0


@verb(
    "promote",
    "make a registered version champion through the gate (--force overrides it, recorded)",
    """\
  empathy-distill promote --version 3
  empathy-distill promote --version 3 --force --reason "judge outage; A/B test passed" """,
)
def cmd_promote(args: argparse.Namespace) -> int:
    """Applies registry.policy to the version's evaluation report and moves the champion alias only when it
    passes (under a lock, compare-and-set); every decision is written to the promotion history."""

    code, lines = promote(_config(args), str(args.version), force=args.force, reason=args.reason or "")
    return show(lines, code)


@verb(
    "rollback",
    "move champion back to the version that held it before (recorded)",
    """\
  empathy-distill rollback --reason "complaints about v4" """,
)
def cmd_rollback(args: argparse.Namespace) -> int:
    """Moves the champion alias back to its previous holder, read from the promotion history, and records why."""

    return show(rollback(_config(args), reason=args.reason or ""))


@verb(
    "lineage",
    "audit a version: MLflow run, ZenML run, data, prompts, teacher, training, judges, promotions",
    """\
  empathy-distill lineage models:/empathy-student@champion
  empathy-distill lineage models:/empathy-student/3 --json
  empathy-distill lineage models:/empathy-student@champion --verify""",
)
def cmd_lineage(args: argparse.Namespace) -> int:
    """Follows a registered version back to what made it: the MLflow and ZenML runs, the data file's hash, the
    prompt templates, the teacher, the training stages, the judges and every promotion decision about it."""

    code, lines = lineage(_config(args), args.model, args.json, args.verify)
    return show(lines, code)


@verb(
    "serve",
    "serve a registered version at one stable address: OpenAI's chat API with streaming (default: the champion)",
    """\
  empathy-distill serve
  empathy-distill serve --model models:/empathy-student/3 --port 5006
  empathy-distill serve --dtype bfloat16
  empathy-distill serve --base smollm2-135m-instruct --port 8081   # a plain local LLM (a teacher or judge)""",
)
def cmd_serve(args: argparse.Namespace) -> int:
    """Runs the stable server in the foreground for a registry alias (followed) or version (pinned): OpenAI's chat API
    with streaming, MLflow's /invocations, /health."""

    if args.base:
        if args.model:
            raise ConfigError("--base serves a model without the registry: leave out --model")
        config = _config(args)
        return serve_base(config, args.base, args.host, args.port or config.registry.deploy.port, args.dtype)
    config = _config(args, *([f"registry.deploy.dtype={args.dtype}"] if args.dtype else []))
    return serve(config, args.model, args.host, args.port or config.registry.deploy.port)


@verb(
    "deploy",
    "the champion elsewhere: the `vllm serve` command (GPUs), or a GGUF file and Ollama Modelfile (llama.cpp, edge)",
    """\
  empathy-distill deploy vllm
  empathy-distill deploy vllm --download /srv/empathy --port 8000
  empathy-distill deploy gguf --model models:/empathy-student@champion --out dist/ --kinds f16,q8_0""",
)
def cmd_deploy(args: argparse.Namespace) -> int:
    """``vllm``: downloads the versions the champion and challenger aliases name and prints the `vllm serve` command
    that serves both as LoRA modules on their base: the base (bundled copy or checked reference), --lora-modules,
    --max-lora-rank from the adapters' rank, the registered chat template and generation defaults. ``gguf``: merges
    a version's adapter into its GGUF base and writes F16/Q8_0 files and an Ollama Modelfile, logged to the version.
    """
    if args.target == "gguf":
        config = _config(args)
        uri = args.model or f"models:/{config.registry.model_name}@champion"
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        return show(gguf_export(uri, args.out, kinds, log=not args.no_log))

    return show(vllm_lines(_config(args), args.download, args.host, args.port))


@verb(
    "retrain",
    "run the distill pipeline only when its inputs differ from the champion's (what a schedule calls)",
    """\
  empathy-distill retrain --config configs/demo.yaml
  empathy-distill retrain --config configs/demo.yaml --set data.path=new.csv --force""",
    needs_config=True,
)
def cmd_retrain(args: argparse.Namespace) -> int:
    """Compares the input hashes (data, prompts, config sections) with the tags of the champion and runs the
    distill pipeline only when one differs, or with --force."""
    # import-time: app.runner 0.9 s to import (app.cli alone 0.5 s)
    from app.runner import run_retrain

    return show(run_retrain(_config(args), force=args.force, enable_cache=not args.no_cache))


@verb(
    "schedule",
    "retrain on schedule.cron: the orchestrator's schedule, or a crontab line and systemd timer",
    """\
  empathy-distill schedule --config configs/demo.yaml --set schedule.cron='0 3 * * 1'""",
    needs_config=True,
)
def cmd_schedule(args: argparse.Namespace) -> int:
    """On an orchestrator that schedules (Kubeflow), registers the retrain pipeline with schedule.cron; on the
    local stack, prints the crontab line and the systemd user timer that call `retrain`."""

    return show(schedule_lines(_config(args), args.config))


def common_options() -> argparse.ArgumentParser:
    """The options every verb takes: --config, --set, -v."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=None, metavar="YAML", help="a run config, e.g. configs/demo.yaml (keys: docs/configs.md)"
    )
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set training.sft.max_steps=20 (repeatable)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log at INFO level and show tracebacks")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="empathy-distill",
        description=__doc__.split("\n\n")[0],
        epilog="`empathy-distill VERB --help` describes a verb, with examples.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    common = common_options()
    options = {
        "init": _init_options,
        "ingest": _ingest_options,
        "bootstrap": _bootstrap_options,
        "teacher-check": _teacher_check_options,
        "calibrate": _calibrate_options,
        "ablation": _cache_option,
        "evaluate": _evaluate_options,
        "distill": _cache_option,
        "promote": _promote_options,
        "rollback": _reason_option,
        "lineage": _lineage_options,
        "serve": _serve_options,
        "deploy": _deploy_options,
        "retrain": _retrain_options,
    }
    for name, spec in VERBS.items():
        func = spec["func"]
        p = sub.add_parser(
            name,
            aliases=list(spec["aliases"]),
            parents=[common],
            help=spec["summary"],
            description=textwrap.fill(" ".join((func.__doc__ or spec["summary"]).split()), 100),
            epilog="examples:\n" + spec["examples"],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        options.get(name, lambda _: None)(p)
        p.set_defaults(func=func, needs_config=spec["needs_config"])
    return parser


def _cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-cache", action="store_true", help="ZenML's step cache off for this run")


def _reason_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", default=None, help="why (recorded in the promotion history)")


def _init_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", default="empathy-local", help="stack name (default: empathy-local)")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="a shared MLflow tracking server, e.g. http://mlflow.internal:5000 "
        "(credentials from MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN); default: the embedded store",
    )
    p.add_argument(
        "--stack-file",
        default=None,
        help="register the stack a file describes, e.g. configs/stacks/kubeflow.yaml "
        "(needs --tracking-uri; set `stack:` in the run config to the same file)",
    )


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="a CSV, JSONL or Hugging Face datasets folder")
    p.add_argument(
        "--format", default="auto", choices=["auto", *FORMATS], help="input format (default: detected from the content)"
    )


def _ingest_options(p: argparse.ArgumentParser) -> None:
    _data_options(p)
    p.add_argument("--out", required=True, help="folder for dialogues.parquet, quarantine.jsonl, report.json")


def _teacher_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dialogues", type=int, default=None, help="how many (default: teacher.check_dialogues, 30)")
    p.add_argument("--json", action="store_true", help="the whole report as JSON")


def _bootstrap_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-cache", action="store_true", help="ZenML step cache off (with --out: the teacher reply cache off)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="run without ZenML and write sft.parquet, dpo.parquet, bootstrap_log.parquet, report.json here",
    )


def _calibrate_options(p: argparse.ArgumentParser) -> None:
    _data_options(p)
    p.add_argument("--folds", type=int, default=5, help="held-out dialogue groups (default 5)")
    p.add_argument(
        "--max-pairs", type=int, default=500, help="pairs sampled for each LLM judge in --config (default 500)"
    )
    p.add_argument(
        "--no-record",
        action="store_true",
        help="do not record the LLM judges' calibrations (recorded: MLflow experiment judge-calibrations, which "
        "admits a judge to the gate at evaluation.min_judge_agreement)",
    )


def _evaluate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--generations-version", default=None, help="a version of the generations artifact (default: latest)"
    )


def _promote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", required=True, type=int, help="registered model version")
    p.add_argument("--force", action="store_true", help="promote even when the gate refuses (needs --reason)")
    _reason_option(p)


def _lineage_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    p.add_argument("--json", action="store_true", help="the whole chain as JSON")
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-check it: the registry's adapter, the data file, the prompt templates, the base and the promotion "
        "history against what was registered (exit 1 when one does not hold, one line each)",
    )


def _serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="models:/NAME@ALIAS or models:/NAME/VERSION (default: models:/<registry.model_name>@champion)",
    )
    p.add_argument(
        "--base",
        default=None,
        metavar="MODEL",
        help="serve this model alone, no adapter, no registry: a preset (smollm2-135m-instruct, gemma3-270m), a "
        ".gguf file, a model folder or a hub id",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: registry.deploy.port (5005)")
    p.add_argument(
        "--dtype",
        choices=["version", "float32", "bfloat16", "int8"],
        default=None,
        help="the served weights' precision (default: registry.deploy.dtype, 'version': as each version was judged)",
    )


def _deploy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=["vllm", "gguf"], help="vllm: the serve command; gguf: files for llama.cpp/Ollama")
    p.add_argument(
        "--download",
        default=".cache/deploy/vllm",
        metavar="DIR",
        help="where the versions are downloaded and serve.sh written (default .cache/deploy/vllm)",
    )
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=None, help="gguf: models:/NAME@ALIAS or models:/NAME/N (default: the champion)")
    p.add_argument("--out", default="dist", metavar="DIR", help="gguf: where the files are written (default dist/)")
    p.add_argument("--kinds", default="f16,q8_0", help="gguf: f16, q8_0 or both (default f16,q8_0)")
    p.add_argument("--no-log", action="store_true", help="gguf: do not log the files to the version")


def _retrain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="run even when nothing changed")
    _cache_option(p)


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    quiet_environment(verbose="-v" in given or "--verbose" in given)
    parser = build_parser()
    args = parser.parse_args(given)
    if args.needs_config and args.config is None:
        parser.error(f"{args.command} needs --config, e.g. --config configs/demo.yaml")
    console_for(args.verbose, json_out=getattr(args, "json", False))
    try:
        return args.func(args)
    except (InputError, ConfigError, JudgeError, StepFailed) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except TeacherError as exc:
        print(f"error: teacher: {one_line(str(exc))}", file=sys.stderr)
        return 3
    except Exception as exc:  # a failed pipeline step, a broken install: one line unless -v asks for more
        if args.verbose:
            raise
        message = " ".join(str(exc).split())
        print(f"error: {type(exc).__name__}: {one_line(message)} (run with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
