"""Prompt templates (files in this folder) and the registry of improvement strategies.

Templates use ``string.Template`` placeholders: ``${situation}``, ``${utterance}``,
``${response}``, ``${target_words}``, ``${max_words}``. Every request starts with
``system.txt``, which defines the three dimensions of empathy (cognitive,
affective, compassionate). A strategy is a list of user turns: one turn for most,
three for ``sequential`` (cognitive, then affective, then compassionate, each turn
seeing the teacher's previous answer). :func:`prompt_hash` goes into lineage and
into step parameters, so editing a template invalidates ZenML's cache.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template
from typing import Literal, get_args

Strategy = Literal["naive", "all_three", "identify_lacking", "cognitive", "affective", "compassionate", "sequential"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
DIMENSIONS: tuple[str, ...] = ("cognitive", "affective", "compassionate")

STRATEGY_TURNS: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in STRATEGIES if name != "sequential"},
    "sequential": ("sequential_1_cognitive", "sequential_2_affective", "sequential_3_compassionate"),
}
SYSTEM = "system"
INITIAL = "initial"
STUDENT_SYSTEM = "student_system"


@cache
def load_template(name: str) -> str:
    """The text of ``<name>.txt`` in this package.

    Raises:
        KeyError: no such template.
    """
    path = resources.files(__package__).joinpath(f"{name}.txt")
    if not path.is_file():
        raise KeyError(f"no prompt template named '{name}'")
    return path.read_text(encoding="utf-8").strip()


def render(name: str, **fields: object) -> str:
    """Fills a template; a missing field is an error, not a silent ``${x}``."""
    return Template(load_template(name)).substitute({k: str(v) for k, v in fields.items()})


def templates_for(strategy: str, with_initial: bool = False) -> list[str]:
    """Names of every template a strategy's requests use, in order."""
    if strategy not in STRATEGY_TURNS:
        raise KeyError(f"unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")
    return [SYSTEM, *([INITIAL] if with_initial else []), *STRATEGY_TURNS[strategy]]


def prompt_hash(names: list[str], folder: str | Path | None = None) -> str:
    """sha256 over the named templates' texts (names included); ``folder``: read them there instead of the package
    (a deployed copy, checked by ``lineage --verify``). A template missing there hashes as missing."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update(b"\0")
        if folder is None:
            text = load_template(name)
        else:
            path = Path(folder) / f"{name}.txt"
            text = path.read_text(encoding="utf-8").strip() if path.is_file() else "\0missing"
        digest.update(text.encode())
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def strategy_turns(strategy: str) -> tuple[str, ...]:
    """The user-turn templates of one strategy."""
    templates_for(strategy)  # validates the name
    return STRATEGY_TURNS[strategy]


def method_prompt_hash(method: str, strategy: str, folder: str | Path | None = None) -> str:
    """Hash of every template a distillation method uses with ``strategy`` (the student's system prompt included);
    ``direct`` uses no teacher template. Goes into lineage and into step parameters."""
    if method == "direct":
        return prompt_hash([STUDENT_SYSTEM], folder)
    return prompt_hash([*templates_for(strategy, with_initial=method == "improve_llm"), STUDENT_SYSTEM], folder)
