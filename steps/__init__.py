"""ZenML steps: one per file; each calls one function of ``empathy_distill`` (or ``deploy``) and names its outputs."""

from steps._zenml_speedups import cache_package_lookup
from steps.bootstrap_responses import bootstrap_responses
from steps.build_training_sets import build_training_sets
from steps.check_teacher import check_teacher
from steps.deploy_model import deploy_model
from steps.evaluate_responses import evaluate_responses
from steps.generate_responses import generate_responses
from steps.ingest_dialogues import ingest_dialogues
from steps.prepare_student import prepare_student
from steps.promote_model import promote_model
from steps.register_model import register_model
from steps.retrain_gate import retrain_gate
from steps.summarize_ablation import summarize_ablation
from steps.train_dpo import train_dpo
from steps.train_sft import train_sft
from steps.validate_dialogues import validate_dialogues
from steps.validate_training_sets import validate_training_sets

__all__ = [
    "bootstrap_responses",
    "build_training_sets",
    "check_teacher",
    "deploy_model",
    "evaluate_responses",
    "generate_responses",
    "ingest_dialogues",
    "prepare_student",
    "promote_model",
    "register_model",
    "retrain_gate",
    "summarize_ablation",
    "train_dpo",
    "train_sft",
    "validate_dialogues",
    "validate_training_sets",
]

cache_package_lookup()
