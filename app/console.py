"""What the command line shows: our log lines once, on stderr, in one format; ZenML's off stdout when the result is
JSON; the dependencies' progress bars, telemetry and notices off unless ``-v``; an error as one line."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def _zenml_logs_to_stderr() -> None:
    """ZenML writes its log lines to stdout; stdout is the command's result (``--json`` must parse), so they go to
    stderr. Importing ``zenml.logger`` installs that handler; every verb but a few imports ZenML anyway."""
    try:
        from zenml.logger import ZenMLConsoleHandler
    except ImportError:  # pragma: no cover (ZenML is a dependency)
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ZenMLConsoleHandler) and not isinstance(handler.stream, _CurrentStderr):
            handler.stream = _CurrentStderr()  # not setStream: it flushes the old stream, which may be closed


OUR_LOGGERS = ("app", "empathy_distill", "pipelines", "steps")


class _NotOurs(logging.Filter):
    """Keeps our loggers' records off ZenML's console handler: ours print them once, on stderr, in our format
    (ZenML's handler would repeat each on stdout, in colour). ZenML's step-log capture, which stores them with
    the run for the dashboard, is another handler and still gets them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] not in OUR_LOGGERS


def _our_lines_once() -> None:
    try:
        from zenml.logger import ZenMLConsoleHandler
    except ImportError:  # pragma: no cover (ZenML is a dependency)
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ZenMLConsoleHandler) and not any(isinstance(f, _NotOurs) for f in handler.filters):
            handler.addFilter(_NotOurs())


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written (a test's capture, or the console)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_HANDLER = logging.StreamHandler(_CurrentStderr())
_HANDLER.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))


def one_line(text: str) -> str:
    """An error message on one line, whatever it quotes from the input: every character that ends a line
    (``str.splitlines`` knows eight, vertical tab and form feed among them) and every other control
    character is written as its escape."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode() for ch in text)


def quiet_environment(verbose: bool) -> None:
    """Before anything heavy is imported: telemetry off, the dependencies' INFO lines and deprecation notices off
    (``-v`` keeps their INFO lines)."""
    quiet = {
        "ZENML_ANALYTICS_OPT_IN": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        # one bar per artifact download: noise in every registry command
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    if not verbose:  # ZenML's INFO lines (step starts, "Reloading configuration file"), datasets' and transformers'
        quiet.update(ZENML_LOGGING_VERBOSITY="WARN", DATASETS_VERBOSITY="error", TRANSFORMERS_VERBOSITY="error")
    for key, value in quiet.items():
        os.environ.setdefault(key, value)
    for module in ("transformers", "trl", "peft", "torch"):  # deprecation notices of dependencies, not ours
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
    # google-api-core (pulled in by kfp for the Kubeflow extra) announces its Python support policy on import
    warnings.filterwarnings("ignore", message="You are using a Python version", category=FutureWarning)


def console_for(verbose: bool, json_out: bool) -> None:
    """Our loggers on stderr (INFO with ``-v``, else WARNING); ZenML's, MLflow's and HTTP clients' chatter filtered;
    no progress bars without a terminal; with ``--json`` ZenML's lines leave stdout."""
    if not sys.stderr.isatty():  # no progress bars in logs: transformers' "Loading weights" bar, hub downloads
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # the trainers' dataset tokenizing maps
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    # ZenML's MLflow tracker tries to switch off autologging for every framework MLflow knows and warns for
    # each one that is not installed (fastai), once per step: nothing to act on, as fastai is not used here
    logging.getLogger("zenml.integrations.mlflow.experiment_trackers.mlflow_experiment_tracker").addFilter(
        lambda record: "Failed to disable MLflow autologging" not in record.getMessage()
    )
    # after a failed step the local orchestrator warns once for every step it then skips; the last line this
    # command prints names the step that failed and its root cause, which is what there is to act on
    logging.getLogger("zenml.orchestrators.local.local_orchestrator").addFilter(
        lambda record: not record.getMessage().startswith("Skipping step")
    )
    # MLflow announces at INFO that it creates the tables of a fresh SQLite store: the first run's two lines
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    if json_out:  # the result is JSON: nothing else may reach stdout
        _zenml_logs_to_stderr()
    if not verbose:  # one line per HTTP request to the teacher and judges (openai's client logs through httpx)
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    _our_lines_once()
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        if _HANDLER not in logger.handlers:  # once, though main() may run many times in one process (tests)
            logger.addHandler(_HANDLER)
        logger.setLevel(logging.INFO if verbose else logging.WARNING)
