"""The ``empathy-distill`` command.

    empathy-distill init                               # local ZenML + MLflow stack, idempotent
    empathy-distill init --stack-file configs/stacks/kubeflow.yaml --tracking-uri https://mlflow.internal
    empathy-distill ingest --data PATH [--format F] --out DIR
    empathy-distill bootstrap --config configs/paper.yaml [--set key=value ...] [--out DIR]
    empathy-distill calibrate --data PATH                # offline scorer vs human ratings
    empathy-distill evaluate --config configs/demo.yaml  # re-judge the latest generations
    empathy-distill ablation --config configs/ablation.yaml
    empathy-distill run --config configs/demo.yaml [--set key=value ...] [--no-cache]
    empathy-distill promote --version N [--force --reason TEXT]   # manual, still gated
    empathy-distill rollback                                       # champion back to the previous holder
    empathy-distill lineage models:/empathy-student@champion [--json]
    empathy-distill serve [--model URI] [--port P]
    empathy-distill retrain --config C [--force]                   # runs only when an input changed
    empathy-distill schedule --config C                            # retrain on a cron: the orchestrator's schedule, or a crontab line

Bad input ends with one line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from empathy_distill.errors import ConfigError, InputError, JudgeError, StepFailed
from empathy_distill.teacher.types import TeacherError

FORMAT_CHOICES = ["auto", "llms_vs_humans", "empathetic_dialogues", "jsonl", "hf_datasets"]


def _quiet_env() -> None:
    for key, value in {
        "ZENML_ANALYTICS_OPT_IN": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # one bar per artifact download: noise in every registry command
    }.items():
        os.environ.setdefault(key, value)


def show(lines: Sequence[str], code: int = 0) -> int:
    """Prints a command's lines to stdout; returns its exit code."""
    for line in lines:
        print(line)
    return code


def cmd_ingest(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from empathy_distill.data.ingest import ingest, require_rows, write_outputs

    overrides = [f"data.path={args.data}", f"data.format={args.format}", *args.set]
    config = load_config(args.config, overrides)
    result = ingest(config.data.path, config.data, config.validation)
    paths = write_outputs(result, args.out)
    print(json.dumps(result.report, indent=2))
    require_rows(result)
    print(f"wrote {paths['dialogues']}, {paths['quarantine']}, {paths['report']}", file=sys.stderr)
    return 0


def cmd_ablation(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from pipelines.runner import run_ablation

    return show(run_ablation(load_config(args.config, args.set), enable_cache=not args.no_cache))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from pipelines.runner import run_evaluation_pipeline

    return show(run_evaluation_pipeline(load_config(args.config, args.set), args.generations_version))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from empathy_distill.data.ingest import ingest, require_rows
    from empathy_distill.judging.scorer import calibrate

    config = load_config(args.config, [f"data.path={args.data}", f"data.format={args.format}", *args.set])
    data = ingest(config.data.path, config.data, config.validation)
    require_rows(data)
    # the judge as deployed: the same margin (tie rule) and penalty the pipeline's scorer uses
    result = calibrate(data.table, folds=args.folds, margin=config.evaluation.scorer_margin, l2=config.evaluation.scorer_l2)
    llm_judges = [j for j in config.evaluation.judges if j.kind == "llm"]
    if llm_judges:  # the same question for each configured LLM judge, on a sample of the pairs
        from empathy_distill.judging.evaluate import LLMJudge, calibrate_judge
        from empathy_distill.teacher import build_teacher

        result["llm_judges"] = [calibrate_judge(data.table, LLMJudge(build_teacher(j.endpoint), name=j.name, on_error=config.evaluation.on_judge_error), args.max_pairs) for j in llm_judges]
    print(json.dumps(result, indent=2))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from pipelines.stack import ensure_local_stack

    return show(ensure_local_stack(stack_name=args.stack, tracking_uri=args.tracking_uri, stack_file=args.stack_file))


def cmd_run(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from pipelines.runner import run_pipeline

    config = load_config(args.config, args.set)
    return show(run_pipeline("distill", config, enable_cache=not args.no_cache))


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config

    config = load_config(args.config, args.set)
    if args.out is None:
        from pipelines.runner import run_pipeline

        return show(run_pipeline("bootstrap", config, enable_cache=not args.no_cache))
    # without ZenML: the same library calls, files in --out
    from empathy_distill.bootstrap_local import bootstrap_to_folder

    report = bootstrap_to_folder(config, args.out, use_cache=not args.no_cache)
    print(json.dumps(report, indent=2))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from pipelines.registry_ops import promote

    code, lines = promote(load_config(args.config, args.set), str(args.version), force=args.force, reason=args.reason or "")
    return show(lines, code)


def cmd_rollback(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from pipelines.registry_ops import rollback

    return show(rollback(load_config(args.config, args.set), reason=args.reason or ""))


def cmd_lineage(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from pipelines.registry_ops import lineage

    return show(lineage(load_config(args.config, args.set), args.model, args.json))


def cmd_serve(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from pipelines.registry_ops import serve

    config = load_config(args.config, args.set)
    return serve(config, args.model, args.host, args.port or config.registry.deploy.port)


def cmd_retrain(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from pipelines.registry_ops import retrain

    return show(retrain(load_config(args.config, args.set), force=args.force, enable_cache=not args.no_cache))


def cmd_schedule(args: argparse.Namespace) -> int:
    from empathy_distill.config import load_config
    from pipelines.registry_ops import schedule_lines

    return show(schedule_lines(load_config(args.config, args.set), args.config))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy-distill", description="Distil empathy from a teacher LLM into a small student.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="set up the local ZenML stack with the MLflow tracker and registry (idempotent)")
    p.add_argument("--stack", default="empathy-local", help="stack name (default: empathy-local)")
    p.add_argument("--tracking-uri", default=None, help="a shared MLflow tracking server, e.g. http://mlflow.internal:5000 "
                   "(credentials from MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN); default: the embedded store")
    p.add_argument("--stack-file", default=None, help="register the stack a file describes, e.g. configs/stacks/kubeflow.yaml "
                   "(needs --tracking-uri; set `stack:` in the run config to the same file)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("ingest", help="read, validate and split a dialogue file")
    p.add_argument("--data", required=True, help="CSV, JSONL or datasets folder")
    p.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help="input format (default: detect from content)")
    p.add_argument("--out", required=True, help="folder for dialogues.parquet, quarantine.jsonl, report.json")
    p.add_argument("--config", default=None, help="YAML config for split and validation settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("bootstrap", help="build SFT/DPO sets with the teacher (the bootstrap pipeline, or files with --out)")
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/paper.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--no-cache", action="store_true", help="ZenML step cache off (with --out: the teacher reply cache off)")
    p.add_argument("--out", default=None, help="run without ZenML and write sft.parquet, dpo.parquet, bootstrap_log.parquet, report.json here")
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("calibrate", help="judges' pairwise accuracy vs human ratings, as deployed (the scorer with its tie margin on held-out dialogues; LLM judges from --config)")
    p.add_argument("--data", required=True, help="a rated dialogue file, e.g. the LLMs-vs-Humans CSV")
    p.add_argument("--format", default="auto", choices=FORMAT_CHOICES)
    p.add_argument("--folds", type=int, default=5, help="held-out dialogue groups (default 5)")
    p.add_argument("--max-pairs", type=int, default=500, help="pairs sampled for each LLM judge in --config (default 500)")
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("ablation", help="methods x strategies x (SFT, SFT+DPO) in one run, with the comparison table")
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/ablation.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-cache", action="store_true")
    p.set_defaults(func=cmd_ablation)

    p = sub.add_parser("evaluate", help="re-judge the latest generations (the evaluate pipeline)")
    p.add_argument("--config", required=True, help="YAML config; its evaluation section is used")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--generations-version", default=None, help="a version of the generations artifact (default: latest)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="run the distill pipeline on the active ZenML stack")
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/demo.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--no-cache", action="store_true", help="disable ZenML step caching for this run")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("promote", help="make a registered version champion through the promotion gate (--force overrides it, recorded)")
    p.add_argument("--version", required=True, type=int, help="registered model version")
    p.add_argument("--force", action="store_true", help="promote even when the gate refuses (needs --reason)")
    p.add_argument("--reason", default=None, help="why (recorded in the promotion history)")
    p.add_argument("--config", default=None, help="YAML config: registry.model_name, registry.policy")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("rollback", help="move champion back to the version that held it before (recorded)")
    p.add_argument("--reason", default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("lineage", help="audit a version: MLflow run, ZenML run, data, prompts, teacher, training, judges, promotions")
    p.add_argument("model", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    p.add_argument("--json", action="store_true", help="the whole chain as JSON")
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("serve", help="serve a registered version with MLflow's model server (default: the champion)")
    p.add_argument("--model", default=None, help="models:/NAME@ALIAS or models:/NAME/VERSION (default: models:/<registry.model_name>@champion)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: registry.deploy.port (5005)")
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("retrain", help="run the distill pipeline only when its inputs differ from the champion's (what a schedule calls)")
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--force", action="store_true", help="run even when nothing changed")
    p.add_argument("--no-cache", action="store_true")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("schedule", help="schedule.cron: the retrain pipeline as a recurring run where the orchestrator schedules (Kubeflow); "
                       "else the crontab line and systemd timer that call `retrain`")
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_schedule)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_env()
    import warnings

    for module in ("transformers", "trl", "peft", "torch"):  # deprecation notices of dependencies, not ours
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
    # google-api-core (pulled in by kfp for the Kubeflow extra) announces its Python support policy on import
    warnings.filterwarnings("ignore", message="You are using a Python version", category=FutureWarning)
    args = build_parser().parse_args(argv)
    if not sys.stderr.isatty():  # no progress bars in logs: transformers' "Loading weights" bar, hub downloads
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # the trainers' dataset tokenizing maps
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    # ZenML's MLflow tracker tries to switch off autologging for every framework MLflow knows and warns for
    # each one that is not installed (fastai), once per step: nothing to act on, as fastai is not used here
    logging.getLogger("zenml.integrations.mlflow.experiment_trackers.mlflow_experiment_tracker").addFilter(
        lambda record: "Failed to disable MLflow autologging" not in record.getMessage())
    # MLflow announces at INFO that it creates the tables of a fresh SQLite store: the first run's two lines
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("empathy_distill", "pipelines", "steps"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except (InputError, ConfigError, JudgeError, StepFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except TeacherError as exc:
        print(f"error: teacher: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # a failed pipeline step, a broken install: one line unless -v asks for more
        if args.verbose:
            raise
        message = " ".join(str(exc).split())
        print(f"error: {type(exc).__name__}: {message} (run with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
