"""A wrong config or an unloadable model costs one line and exit code 2, before any teacher call or training."""

from __future__ import annotations

import os

import pytest

from app.cli import main
from empathy_distill.testing.loopback import LoopbackServer
from tests.conftest import REPO, SAMPLE_DATA

DEMO = str(REPO / "configs" / "tiny.yaml")
PAPER = str(REPO / "configs" / "paper.yaml")


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZENML_CONFIG_PATH", str(tmp_path / "zen"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, list[str]]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.err.strip().splitlines()

    return run


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.pth=x", "data.pth: Extra inputs are not permitted"),  # unknown key
        ("training.sft.batch_size=four", "training.sft.batch_size: Input should be a valid integer"),  # wrong type
        ("data.split.test_fraction=1.5", "data.split.test_fraction: Input should be less than 1"),  # out of range
        ("training.sft.learning_rate=-1", "training.sft.learning_rate: Input should be greater than 0"),
        ("bootstrap.strategy=kind", "bootstrap.strategy: Input should be 'naive', 'all_three'"),
    ],
)
def test_a_bad_value_is_one_line(cli, override, message):
    code, err = cli("distill", "--config", DEMO, "--set", override)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_a_missing_key_variable_is_one_line(cli, monkeypatch):
    monkeypatch.delenv("EMPATHY_TEST_KEY", raising=False)
    overrides = [f"data.path={SAMPLE_DATA}", "teacher.api_key_env=EMPATHY_TEST_KEY", "student.model=tiny"]
    code, err = cli("distill", "--config", PAPER, *[arg for o in overrides for arg in ("--set", o)])
    assert code == 2 and len(err) == 1 and "EMPATHY_TEST_KEY" in err[0], err


def test_a_data_path_that_is_a_folder_or_not_text(cli, tmp_path):
    (tmp_path / "folder.csv").mkdir()
    code, err = cli("distill", "--config", DEMO, "--set", f"data.path={tmp_path / 'folder.csv'}")
    assert code == 2 and err == [
        f"error: {tmp_path / 'folder.csv'}: is a folder but not a datasets save_to_disk folder (no dataset_info.json)"
    ]
    (tmp_path / "image.csv").write_bytes(bytes(range(256)) * 64)
    code, err = cli("distill", "--config", DEMO, "--set", f"data.path={tmp_path / 'image.csv'}")
    assert code == 2 and err == [
        f"error: {tmp_path / 'image.csv'}: not a text file (binary content in the first 8 KiB)"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_data_file(cli, tmp_path):
    locked = tmp_path / "locked.csv"
    locked.write_text(SAMPLE_DATA.read_text())
    locked.chmod(0)
    code, err = cli("distill", "--config", DEMO, "--set", f"data.path={locked}")
    assert code == 2 and len(err) == 1 and "cannot read file" in err[0], err


@pytest.mark.parametrize(
    "model, message",
    [
        (
            "org/not-downloaded",
            "student.model 'org/not-downloaded': not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
        ),
        ("./no-such-student", "student.model './no-such-student': no such folder"),
    ],
)
def test_an_unloadable_student_stops_before_the_teacher(cli, monkeypatch, model, message):
    """configs/paper.yaml with a teacher that answers: the student is checked before the first request."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with LoopbackServer() as server:
        code, err = cli(
            "distill",
            "--config",
            PAPER,
            "--set",
            f"data.path={SAMPLE_DATA}",
            "--set",
            f"teacher.base_url={server.base_url}",
            "--set",
            f"student.model={model}",
        )
        assert sum(server.completed.values()) == 0 and sum(server.statuses.values()) == 0
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_an_unloadable_local_judge_is_named_by_its_key(cli, tmp_path):
    judge = "evaluation.judges=[{name: local, kind: llm, endpoint: {backend: local, model: ./no-judge-here}}]"
    code, err = cli("distill", "--config", DEMO, "--set", f"data.path={SAMPLE_DATA}", "--set", judge)
    assert code == 2 and err == ["error: evaluation.judges[0].endpoint.model './no-judge-here': no such folder"], err
