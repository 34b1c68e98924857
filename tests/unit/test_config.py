"""Typed configs: YAML plus --set overrides; typos and wrong types fail with the key's path."""

from __future__ import annotations

import pytest

from empathy_distill.config import load_config
from empathy_distill.errors import ConfigError
from tests.conftest import REPO


def test_demo_config_loads_with_overrides():
    cfg = load_config(REPO / "configs" / "demo.yaml", ["data.split.test_fraction=0.3", "validation.max_text_chars=900"])
    assert cfg.data.split.test_fraction == 0.3
    assert cfg.validation.max_text_chars == 900
    assert cfg.data.path == "data/sample/dialogues.csv"


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.pth=x", "data.pth: Extra inputs are not permitted"),
        ("data.split.method=random", "data.split.method: Input should be 'auto', 'paper' or 'hash'"),
        ("validation.max_text_chars=many", "validation.max_text_chars: Input should be a valid integer"),
        ("novalue", "expected key=value"),
        ("registry.deploy.decoder=fast", "registry.deploy.decoder: Input should be 'auto', 'packed' or 'transformers'"),
    ],
)
def test_bad_override_names_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_int8_serving_cannot_be_asked_of_transformers_forward():
    with pytest.raises(ConfigError, match="dtype int8 is served through the packed pass"):
        load_config(None, ["registry.deploy.dtype=int8", "registry.deploy.decoder=transformers"])
    assert load_config(None, ["registry.deploy.dtype=int8"]).registry.deploy.dtype == "int8"


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_redaction_keeps_variable_names_and_drops_secrets():
    from empathy_distill.tracking import redacted

    tree = {
        "teacher": {
            "api_key_env": "OPENAI_API_KEY",
            "max_tokens": 256,
            "api_key": "sk-live",
            "extra": {"hf_token": "hf_x"},
        }
    }
    assert redacted(tree) == {
        "teacher": {
            "api_key_env": "OPENAI_API_KEY",
            "max_tokens": 256,
            "api_key": "<redacted>",
            "extra": {"hf_token": "<redacted>"},
        }
    }


def test_a_config_extends_another(tmp_path):
    demo = load_config(REPO / "configs" / "tiny.yaml")  # ablation.yaml extends tiny.yaml, which extends demo.yaml
    ablation = load_config(REPO / "configs" / "ablation.yaml")
    # what ablation.yaml sets wins; a mapping it sets in part keeps its base's other keys; the rest is its base's
    assert (ablation.name, ablation.training.sft.learning_rate, ablation.training.sft.epochs) == ("ablation", 1e-3, 1)
    assert ablation.training.dpo == demo.training.dpo and ablation.student == demo.student
    assert ablation.data == demo.data and ablation.generation == demo.generation
    assert ablation.ablation.strategies == ["naive", "all_three", "sequential"]
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cannot extend itself"):
        load_config(tmp_path / "a.yaml")


def test_each_config_is_its_own_lineage(tmp_path):
    # the registered model and the experiment follow the config's name unless set: the paper run never registers
    # into (or is judged against the champion of) the demo's model
    configs = {p.stem: load_config(p) for p in sorted((REPO / "configs").glob("*.yaml"))}
    paper, demo, real = configs["paper"], configs["demo"], configs["real-offline"]
    assert (paper.registry.model_name, paper.tracking.experiment) == ("paper", "paper")
    assert (demo.registry.model_name, demo.tracking.experiment) == ("empathy-student", "demo")
    assert real.registry.model_name == "empathy-student-real" and real.tracking.experiment == "real-offline"
    # the ablation registers nothing; tiny.yaml is the demo on the tiny student (the test suite's stand-in), so it
    # is the demo's lineage on purpose
    tiny = configs.pop("tiny")
    assert (tiny.registry.model_name, tiny.tracking.experiment, tiny.student.model) == (
        "empathy-student",
        "demo",
        "tiny",
    )
    assert demo.student.model == "smollm2-135m-instruct"
    registering = [c for name, c in configs.items() if name != "ablation"]
    assert len({c.registry.model_name for c in registering}) == len(registering)
    assert len({c.tracking.experiment for c in configs.values()}) == len(configs)

    renamed = load_config(None, ["name=nightly"])
    assert (renamed.registry.model_name, renamed.tracking.experiment) == ("nightly", "nightly")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {REPO / 'configs' / 'demo.yaml'}\nname: mine\nregistry: {{model_name: null}}\n")
    assert load_config(child).registry.model_name == "mine"
    # the defaults are not shared objects: naming one config leaves the next one's defaults alone
    # without --config (serve, rollback, promote): the default name, which is the demo's model
    assert load_config(None).registry.model_name == "empathy-student" == load_config(None).tracking.experiment
