"""Shared fixtures: small input files written on the fly, and the path of the real data."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Anything that touches ZenML in-process (materializers) gets a throw-away store, never the user's.
os.environ["ZENML_CONFIG_PATH"] = tempfile.mkdtemp(prefix="zenml-tests-")
# Under pytest-xdist (`make test`: two workers on two cores) each worker, and every process it starts, computes on one
# thread: two workers at torch's default of a thread per core would ask for twice the cores there are (OpenMP threads
# spinning against each other). Set before anything imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "llms_vs_humans.csv"
SAMPLE_DATA = REPO / "data" / "sample" / "dialogues.csv"
# the distill pipeline's steps in the order they run on the demo config (no deploy step), as the tests expect them
DISTILL_STEPS = """ingest_dialogues validate_dialogues bootstrap_responses build_training_sets validate_training_sets
prepare_student train_sft train_dpo generate_responses evaluate_responses register_model promote_model""".split()  # noqa: SIM905

# A gate no 15-dialogue evaluation can clear (15 wins of 15 give a Wilson ci_low of 0.796): for tests that need a
# refused v1 (the forced promotion, the "Next" hints), whatever the tiny student happens to score on the sample.
GATE_OUT_OF_REACH = ("--set", "registry.policy.rules=[{opponent: base, bound: ci_low, op: '>', threshold: 0.9}]")

LVH_SOURCES = ["human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy"]
LVH_HEADER = (
    ["dialog_id", "emotion", "situation", "speaker_uttr"]
    + [f"response_{s}" for s in LVH_SOURCES]
    + [f"rating_{s}" for s in LVH_SOURCES]
)


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # ZenML finds its source root from the main module's file, and an xdist worker's main module has none
        # (execnet starts it from a string): give it the repository, the root a step's module resolves from.
        from zenml.utils import source_utils

        source_utils.set_custom_source_root(str(REPO))


def lvh_record(i: int, **overrides: str) -> dict[str, str]:
    """One LLMs-vs-Humans record; ratings give two 3s so the paper split says train."""
    rec = {
        "dialog_id": f"d{i}",
        "emotion": "sad",
        "situation": f"My cat number {i} ran away last week.",
        "speaker_uttr": "I keep leaving the door open hoping she comes back.",
        "response_human": "Oh no, I hope she returns soon.",
        "response_chatgpt_empathy": "That sounds so hard. Leaving the door open shows how much you care.",
        "response_llama_empathy": "I can hear how much you miss her. Posting flyers nearby might help.",
        "response_gemini_empathy": "Losing a pet is painful. I hope she finds her way home.",
        "response_mixtral_empathy": "It must be worrying. Have you checked local shelters?",
        "rating_human": "2",
        "rating_chatgpt_empathy": "3",
        "rating_llama_empathy": "3",
        "rating_gemini_empathy": "2",
        "rating_mixtral_empathy": "1",
    }
    rec.update(overrides)
    return rec


def lvh_csv(records: list[dict[str, str]], header: list[str] | None = None, line_end: str = "\n") -> str:
    """CSV text in the LLMs-vs-Humans layout (quoted where needed)."""
    header = header or LVH_HEADER
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=line_end)
    writer.writerow(header)
    for rec in records:
        writer.writerow([rec.get(col, "") for col in header])
    return buf.getvalue()


@pytest.fixture
def write(tmp_path: Path):
    """write(name, text_or_bytes) -> path inside tmp_path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    return _write


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.exists():
        pytest.skip(f"real data not found at {REAL_DATA} (it lives in ../shared, outside the repo)")
    return REAL_DATA


# Real pretrained students (tests/real_models.py): each GGUF dequantised at most once and each model loaded at most once
# per test session, whichever test module asks first.


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory):
    """One folder for the whole run: under pytest-xdist the workers share it (the parent of each worker's temp
    folder), so each GGUF is dequantised once per run, not once per worker."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / "real-students"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def real_folder(real_cache):
    """preset -> (dequantised folder, info), converted at most once per run (a file lock keeps a second worker
    waiting while the first converts, then it finds the folder)."""
    made: dict[str, tuple[str, dict]] = {}

    from filelock import FileLock

    from empathy_distill.training import sources
    from tests.real_models import need

    def get(preset: str) -> tuple[str, dict]:
        need(preset)
        if preset not in made:
            with FileLock(str(real_cache / f"{preset}.lock")):
                made[preset] = sources.resolve_student(preset, real_cache)
        return made[preset]

    return get


@pytest.fixture(scope="session")
def loaded(real_folder):
    """preset -> (tokenizer, model, chat format), loaded once per session."""
    from empathy_distill.config import StudentConfig
    from empathy_distill.training.student import load_student

    models: dict[str, tuple] = {}

    def get(preset: str):
        if preset not in models:
            folder, _ = real_folder(preset)
            models[preset] = load_student(folder, StudentConfig(model=folder, dtype="float32"))
        return models[preset]

    return get


MLFLOW_PROCESS_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


@contextmanager
def _restored_mlflow_state():
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils
    import mlflow.tracking.fluent as fluent

    saved_env = {k: os.environ.get(k) for k in MLFLOW_PROCESS_ENV}
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri, fluent._active_experiment_id)
    yield
    tracking_utils._tracking_uri, registry_utils._registry_uri, fluent._active_experiment_id = saved
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _mlflow_process_state():
    """Each test starts with the MLflow process state the one before it found: the tracking and registry URIs (set
    by in-process pipelines and downloads: ZenML's MLflow tracker and ``mlflow.set_registry_uri`` also write
    ``MLFLOW_REGISTRY_URI``, which every later client and child inherits), the active experiment and the experiment
    variables. A leaked registry URI (a test's ``monkeypatch.delenv(..., raising=False)`` of a variable not yet set
    undoes nothing) had later tests register in one store and look the model up in another."""
    with _restored_mlflow_state():
        yield


@pytest.fixture(autouse=True, scope="module")
def _mlflow_module_state():
    """The same around each test module, for what its module-scoped fixtures set (set up before them, as an autouse
    fixture of their scope): a module fixture's ``mlflow.set_experiment`` left ``MLFLOW_EXPERIMENT_ID`` pointing into
    its own store, and the next module's fresh store had no such experiment (the order of modules in a process is
    pytest-xdist's, not the file order)."""
    with _restored_mlflow_state():
        yield
