"""Typed configs: one pydantic model per stage, loaded from YAML with ``--set`` overrides.

Every model forbids unknown keys, so a typo in a config file fails loudly with
the path of the offending key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from empathy_distill.data.schema import Format
from empathy_distill.errors import ConfigError
from empathy_distill.prompts import Strategy

# Each list of choices is defined once, here or beside what it names (strategies with the prompt
# templates, formats with the readers); code that needs the values uses typing.get_args.
Method = Literal["direct", "improve_human", "improve_llm"]
Opponent = Literal["base", "human", "llm", "champion"]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SplitConfig(Strict):
    """How dialogues are split into train and test."""

    method: Literal["auto", "paper", "hash"] = "auto"
    """auto: the paper's rule when every dialogue has >= 2 ratings, else hash."""
    test_fraction: float = Field(0.125, gt=0.0, lt=1.0)
    """Share of dialogues in test for the hash split."""
    seed: int = 0
    """Salt of the hash split."""


class DataConfig(Strict):
    """Where the dialogues come from."""

    path: str = "data/sample/dialogues.csv"
    """A CSV or JSONL file, or a datasets save_to_disk folder; relative to the working folder."""
    format: Literal["auto"] | Format = "auto"
    """auto detects the format from the content."""
    split: SplitConfig = SplitConfig()


class ValidationConfig(Strict):
    """Bounds the raw validation suite enforces."""

    max_text_chars: int = Field(5000, ge=16)
    """Longest situation, utterance or response kept (characters)."""


class PriceConfig(Strict):
    """Prices per 1,000 tokens, for the cost budget and the cost metrics."""

    input_per_1k: float = Field(0.0, ge=0.0)
    """USD per 1k prompt tokens."""
    output_per_1k: float = Field(0.0, ge=0.0)
    """USD per 1k completion tokens."""
    batch_discount: float = Field(0.5, gt=0.0, le=1.0)
    """Price factor of the Batch API (OpenAI charges half)."""


class TraceSettings(Strict):
    """Which of an LLM stage's requests become spans of its MLflow trace (the stage itself always does)."""

    sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    """Share of the requests traced, chosen by request hash (a rerun traces the same ones); 0: none."""
    max_request_spans: int | None = Field(64, ge=0)
    """At most this many request spans per stage (None: no cap). MLflow writes each span to its store on its own
    (about 3 ms a span on SQLite here): the cap keeps a 100k-dialogue stage's tracing to seconds."""


class TeacherConfig(Strict):
    """The teacher LLM: any OpenAI-compatible endpoint, or a local transformers model."""

    backend: Literal["openai", "local"] = "openai"
    """openai: any OpenAI-compatible HTTP endpoint; local: a transformers model path."""
    model: str = "gpt-4o"
    """Model name at the endpoint, or a local model folder for the local backend."""
    base_url: str | None = None
    """Endpoint, e.g. http://127.0.0.1:8000/v1; None = api.openai.com."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the key (the key never goes in a config)."""
    mode: Literal["online", "batch"] = "online"
    """online: concurrent requests; batch: the Batch API (half price, hours of latency)."""
    concurrency: int = Field(64, ge=1, le=4096)
    """Requests in flight at once, at most."""
    adaptive_concurrency: bool = True
    """Fewer requests in flight while the endpoint answers 429 (its rate limit), more again as replies come back;
    off: always ``concurrency``."""
    timeout_s: float = Field(60.0, gt=0)
    """Per-request timeout."""
    max_retries: int = Field(6, ge=0)
    """Retries on 429, 5xx, timeouts, dropped connections and malformed replies."""
    backoff_base_s: float = Field(1.0, ge=0)
    """First retry delay; doubles per retry, with jitter, capped by backoff_max_s."""
    backoff_max_s: float = Field(60.0, ge=0)
    """Longest wait between retries (a longer Retry-After is still honoured)."""
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    """Sampling temperature."""
    max_tokens: int = Field(256, ge=1)
    """Longest reply in tokens."""
    seed: int | None = 0
    """Sent to endpoints that support it; part of the cache key."""
    cache_path: str = ".cache/teacher.sqlite"
    """Reply cache (SQLite, WAL); a rerun sends no request that already completed."""
    max_requests: int | None = Field(None, ge=0)
    """Stop cleanly after this many requests sent (cache hits are free)."""
    max_cost_usd: float | None = Field(None, ge=0)
    """Stop cleanly once this much has been spent."""
    prices: PriceConfig = PriceConfig()
    batch_poll_s: float = Field(30.0, gt=0)
    """Seconds between polls of a batch job."""
    batch_timeout_s: float = Field(26 * 3600, gt=0)
    """Give up waiting for a batch after this long (it can be resumed by id later)."""
    max_failed_fraction: float = Field(0.02, ge=0.0, le=1.0)
    """The bootstrap step fails when more dialogues than this failed (not counting the budget)."""
    check: bool = False
    """Before the bootstrap, rewrite ``check_dialogues`` train dialogues and judge each rewrite against its original
    with the offline judges (both orders); the run stops with one line unless every judge's Wilson interval lies
    above one half (``empathy-distill teacher-check`` runs the same alone). Its replies are the bootstrap's first
    ones: the full run takes them from the cache."""
    check_dialogues: int = Field(30, ge=4)
    """Dialogues the teacher check rewrites and judges."""
    tracing: TraceSettings = TraceSettings()
    """MLflow traces of the requests (inside a tracked run): the sampled share of each stage's requests."""


class BootstrapConfig(Strict):
    """How training data is made: the method, the strategy and the set sizes."""

    method: Method = "direct"
    """direct: recorded responses rated high (no teacher); improve_*: the teacher rewrites."""
    strategy: Strategy = "all_three"
    """The improvement prompt (see empathy_distill/prompts)."""
    sft_dialogues: int = Field(950, ge=0)
    """Train dialogues for SFT (improvement methods); scaled down on smaller data."""
    dpo_dialogues: int = Field(800, ge=0)
    """Train dialogues for DPO, disjoint from the SFT ones."""
    seed: int = 0
    """Seed of the SFT/DPO assignment."""
    target_words: int = Field(28, ge=1)
    """Length asked of the teacher (the data's average reply is about 28 words)."""
    max_words: int = Field(97, ge=1)
    """Replies longer than this are invalid (the data's longest is 97 words)."""
    direct_min_rating: int = Field(3, ge=1, le=3)
    """direct: recorded LLM responses rated at least this become SFT rows and chosen responses."""


class TinyStudentConfig(Strict):
    """The offline student: a small Llama with a tokenizer trained on the ingested text."""

    max_vocab: int = Field(4000, ge=300)
    """Upper bound on the BPE vocabulary; the trainer stops earlier on small data."""
    hidden_size: int = Field(64, ge=16)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    max_length: int = Field(256, ge=32)
    """Context length of the model."""
    pretrain_steps: int = Field(300, ge=0)
    """Causal-LM steps on the dialogue text so that replies are word-like (well under 2 minutes on 2 CPU cores)."""
    pretrain_batch: int = Field(16, ge=1)
    pretrain_seq: int = Field(64, ge=8)
    pretrain_lr: float = Field(3e-3, gt=0)
    warmup_replies: Literal["below_top", "none"] = "below_top"
    """Listener replies in the warm-up: below_top = recorded model replies rated below the top rating (a base
    that already answers like a mediocre assistant); none = situations and speaker turns only (a base that has
    never read a listener's reply, like a pretrained model before chat tuning)."""
    seed: int = 0


class StudentConfig(Strict):
    """The student: ``tiny`` (built here, offline) or a Hugging Face model id or local path."""

    model: str = "tiny"
    """tiny; a packaged real model (smollm2-135m-instruct, gemma3-270m: docs/students.md); a .gguf file; a hub id
    such as Qwen/Qwen2.5-0.5B-Instruct; or a local folder. A GGUF is dequantised once into cache_dir."""
    chat_template: str | None = None
    """A Jinja chat template for models that have none (a plain role-tagged one is added otherwise)."""
    cache_dir: str = ".cache/students"
    """Where built tiny students (one folder per data hash and settings) and dequantised GGUF students (one folder
    per file sha256) live."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """auto: bfloat16 on a GPU that supports it, else float32."""
    tiny: TinyStudentConfig = TinyStudentConfig()


class LoraSettings(Strict):
    """LoRA adapter shape (PEFT)."""

    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"
    """Module names, or all-linear."""


class StageSettings(Strict):
    """Optimizer settings of one training stage (SFT or DPO)."""

    learning_rate: float = Field(5e-5, gt=0)
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: run the epochs)."""
    max_length: int = Field(256, ge=16)
    """Longest prompt + response in tokens."""
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    save_steps: int = Field(50, ge=1)
    """Checkpoint every N steps (training resumes from the last one)."""
    logging_steps: int = Field(1, ge=1)


class TrainingConfig(Strict):
    """SFT then DPO with LoRA, as in the paper (r=8, lr 5e-5, 3 epochs, batch 2, beta 0.1)."""

    stages: Literal["sft+dpo", "sft", "dpo"] = "sft+dpo"
    """sft+dpo: DPO starts from the SFT adapter; sft or dpo alone for the ablation."""
    lora: LoraSettings = LoraSettings()
    sft: StageSettings = StageSettings()
    dpo: StageSettings = StageSettings()
    beta: float = Field(0.1, gt=0)
    """DPO temperature."""
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    output_dir: str = ".cache/training"
    """Checkpoints, one folder per stage and input hash; a rerun resumes from the last checkpoint."""
    precision: Literal["auto", "float32", "bf16-autocast"] = "auto"
    """Weights stay float32 in every mode. bf16-autocast: matmuls in bfloat16 under torch.autocast (a GPU with bf16,
    or a CPU with AMX/AVX512-BF16); auto: bf16-autocast where the hardware has it, else float32 (the bench compares
    the loss curves of both on the same rows: docs/performance.md)."""
    group_by_length: bool = True
    """SFT batches of rows of similar length (transformers' length-grouped sampler: less padding, the same loss
    masking); false draws them at random. DPO batches are drawn at random (TRL's preference rows have no single
    length)."""
    gradient_checkpointing: bool = False
    """Trades compute for memory; pays off for models of 1B parameters and up."""
    seed: int = 0
    num_processes: int = Field(1, ge=1)
    """Processes that train each stage together inside its step (torchrun + DDP: one per GPU, gloo on CPU).
    The global batch is batch_size x grad_accum x num_processes; exactly one adapter is saved."""


class GenerationSettings(Strict):
    """How base and tuned students answer the test prompts."""

    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    """0 = greedy."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    no_repeat_ngram_size: int = Field(0, ge=0)
    """Forbid repeating any n-gram of this size (0: off); small students decoded greedily loop otherwise."""
    batch_size: int = Field(16, ge=1)
    max_prompts: int | None = Field(None, ge=1)
    """Only the first N test dialogues (None: all)."""


class JudgeEndpointConfig(TeacherConfig):
    """An LLM judge's endpoint: the teacher's settings, with a judge's own generation defaults."""

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    """NOTE: differs from the teacher's 0.7: a judge samples nothing, so position-consistency measures the judge, not
    sampling noise."""
    max_tokens: int = Field(256, ge=1)
    """Room for a short reasoning before the ``Verdict:`` line."""
    cache_path: str = ".cache/judges.sqlite"
    """Apart from the teacher's replies by default (each cache holds one endpoint's replies: docs/teacher.md)."""


class JudgeConfig(Strict):
    """One judge: the offline scorer, or an LLM over an OpenAI-compatible endpoint."""

    name: str = "scorer"
    """Label in reports and metric names."""
    kind: Literal["scorer", "llm", "reference"] = "scorer"
    """scorer: MiniLM + a head fitted on train ratings; reference: similarity to the dialogue's own top- minus
    low-rated recorded replies (nothing fitted; needs recorded ratings); llm: an endpoint."""
    endpoint: JudgeEndpointConfig | None = None
    """For kind llm: model, base_url, api_key_env, concurrency, cache, budget (the teacher client is reused;
    temperature 0 by default)."""


class EvaluationConfig(Strict):
    """Pairwise evaluation of the tuned student."""

    judges: list[JudgeConfig] = [JudgeConfig()]
    """Every judge sees every pair in both orders; two or more give Cohen's kappa."""
    opponents: list[Opponent] = list(get_args(Opponent))
    """base: the student without its adapter; human: the recorded human reply; llm: a recorded LLM reply;
    champion: the registry's current champion answering the same prompts (judged only while one exists)."""
    reference_llm: str = "chatgpt"
    """The recorded source used as the llm opponent."""
    max_invalid_fraction: float = Field(0.1, ge=0.0, le=1.0)
    """Per judge and opponent: more invalid comparisons than this makes the report ``valid: false`` (never promoted)."""
    max_degenerate_fraction: float = Field(0.05, ge=0.0, le=1.0)
    """More of the tuned student's replies than this empty, run to max_new_tokens without an end-of-turn, or
    dominated by a repeated phrase makes the report ``valid: false`` (never promoted); each such reply already
    counts as a loss."""
    min_judge_agreement: float = Field(0.55, ge=0.0, le=1.0)
    """An LLM judge counts in the gate only when a calibration of it (same model, same judge prompt hash; at least
    200 pairs, ``empathy-distill calibrate``) agrees with the human ratings at least this often (ties half);
    otherwise it is reported and the gate says why it did not count it (``judging/admission.py``)."""
    on_judge_error: Literal["fail", "continue"] = "fail"
    """fail: a judge request that failed after its retries ends the run with one error line;
    continue: it counts as invalid and the report says why it is not valid."""
    scorer_margin: float = Field(0.01, ge=0.0)
    """The scorer calls a tie when its two scores (predicted ratings, 1-3) differ by this or less; calibrate uses the
    same."""
    scorer_l2: float = Field(0.0125, gt=0.0)
    """Ridge penalty of the scorer's head per training row (alpha = l2 x rows; 0.0125 is alpha 100 on the real file,
    the best measured)."""
    reference_margin: float = Field(0.01, ge=0.0)
    """The reference judge calls a tie when its two similarity scores differ by this or less."""
    cache_dir: str = ".cache/judges"
    """Fitted scorer heads, reused while their training rows are unchanged."""


class AblationConfig(Strict):
    """The grid: methods x strategies, each trained SFT-only and SFT+DPO, in one run."""

    methods: list[Method] = list(get_args(Method))
    strategies: list[Strategy] = ["naive", "all_three"]
    """Crossed with the improvement methods; direct has no strategy."""
    stages: list[Literal["sft", "sft+dpo"]] = ["sft", "sft+dpo"]


class TrackingConfig(Strict):
    """MLflow naming (the tracking URI comes from the active ZenML stack)."""

    experiment: str | None = None
    """MLflow experiment; None: the config's ``name`` (every pipeline of one config logs to one experiment, and two
    configs never share one unless they name it)."""


class GateRule(Strict):
    """One condition of the promotion gate, checked for every judge: ``<bound> <op> <threshold>`` vs one opponent."""

    opponent: Opponent
    bound: Literal["ci_low", "win_rate", "ci_high"] = "ci_low"
    """ci_low: the 95% Wilson lower bound (the default: the challenger must win beyond doubt);
    ci_high: the upper bound (only "not shown to lose")."""
    op: Literal[">", ">="] = ">"
    threshold: float = Field(0.5, ge=0.0, le=1.0)

    def describe(self) -> str:
        return f"vs {self.opponent}: {self.bound} {self.op} {self.threshold:g}"


class PromotionPolicy(Strict):
    """When a challenger becomes ``champion``: a valid, complete evaluation that clears every rule."""

    rules: list[GateRule] = [
        GateRule(opponent="base", bound="ci_low", op=">", threshold=0.5),
        GateRule(opponent="champion", bound="ci_low", op=">=", threshold=0.45),
    ]
    """Rules vs champion apply while a champion exists; the challenger must have been judged against that very
    version. A first champion clears the same rules, less the champion ones (there is no looser first step)."""
    min_valid_comparisons: int = Field(30, ge=1)
    """Per judge and ruled opponent: fewer valid (non-invalid) comparisons than this never promotes."""


class DeployConfig(Strict):
    """The stable address that serves the champion (``empathy-distill serve``, and the ``deploy`` step that starts it
    once and then waits for it to follow each promotion)."""

    enabled: bool = False
    """Off by default: a pipeline run then leaves no server behind; ``empathy-distill serve`` starts one by hand."""
    host: str = "127.0.0.1"
    port: int = Field(5005, ge=1, le=65535)
    """The one port clients use; a promotion or a rollback changes what it answers with, never where."""
    state_dir: str = ".cache/deploy"
    """The server's record (``live.json``: URL, pid, routes), its log and its downloaded versions."""
    ready_timeout_s: float = Field(120.0, gt=0)
    """How long the step waits for the server to start, and then to serve the new champion."""
    max_concurrency: int = Field(32, ge=1)
    """Requests inside the server at once (generating or queued for a batch); one more gets 429 with Retry-After at
    once, so a burst is refused at the door instead of queueing without bound."""
    poll_s: float = Field(1.0, gt=0)
    """Seconds between the server's reads of the registry's aliases: a switch follows an alias move within this
    plus the time to load and warm the new version (documented bound: docs/registry.md)."""
    max_loaded: int = Field(4, ge=2)
    """Versions held in memory (champion, challenger, the rollback target, then the most recently asked for)."""
    dtype: Literal["version", "float32", "bfloat16", "int8"] = "version"
    """The served weights' precision: version = the one each version was registered with (auto: float32 on a CPU, as
    the evaluation generated); bfloat16 reads half the bytes per token; int8 (Llama-family bases on a CPU, through
    the packed pass below) a quarter: int8 weights, one scale per output row, bfloat16 activations. Greedy replies
    in bfloat16 and int8 drift from float32's (docs/performance.md has the speeds and the drift)."""
    merge_adapter: bool = True
    """While a base holds one version's adapter only, serve it merged into the base weights (one matmul per layer
    instead of three); a second version on the same base unmerges it."""
    decoder: Literal["auto", "packed", "transformers"] = "auto"
    """auto: a Llama-family base (Llama, Qwen2, Mistral without a sliding window) in float32 or bfloat16 on a CPU
    decodes through our own pass on weights packed for oneDNN (``serving/decoder.py``: about 2x one chat's tokens/s
    over transformers' forward here, docs/performance.md; a second copy of the weights in memory) while it serves no
    adapter or one merged; packed: that pass off a CPU too (fused, unpacked); transformers: the model's own forward."""

    @model_validator(mode="after")
    def _int8_needs_the_packed_pass(self) -> DeployConfig:
        if self.dtype == "int8" and self.decoder == "transformers":
            raise ValueError("dtype int8 is served through the packed pass: decoder transformers cannot serve it")
        return self


class RegistryConfig(Strict):
    """MLflow model registry: registration, the promotion gate, the promotion history and deployment."""

    model_name: str | None = Field(None, min_length=1)
    """Registered model name in MLflow (and the ZenML Model of the pipeline); None: the config's ``name``, so each
    config is its own lineage (its own versions, champion and retrain baseline): a paper run is never judged
    against the demo's champion."""
    policy: PromotionPolicy = PromotionPolicy()
    history: str | None = None
    """Where the promotion history and its lock live: a file path (SQLite + a file lock: one machine), or
    ``postgresql://user@host:port/db`` (a table + an advisory lock: every machine that promotes).
    None: ``promotions.sqlite`` beside a local MLflow store (a tracking server needs one named)."""
    deploy: DeployConfig = DeployConfig()
    bundle_base_max_mb: int = Field(2048, ge=0)
    """A local base folder up to this size is bundled into the registered model (it loads after the folder moves);
    a larger one, or a hub id, is a reference with its content fingerprint (checked when the version loads)."""


class ScheduleConfig(Strict):
    """Scheduled retraining."""

    cron: str | None = None
    """e.g. ``0 3 * * 1``: a ZenML Schedule on orchestrators that support one; on the local stack use
    ``empathy-distill schedule``."""


class DistillConfig(Strict):
    """The whole run: one section per stage."""

    name: str = Field("empathy-student", min_length=1)
    """A label for this config, logged with every run; the default registered model and MLflow experiment. Verbs
    run without ``--config`` (``serve``, ``rollback``, ...) use this default: the demo's model."""
    data: DataConfig = DataConfig()
    """The dialogue file, its format and the train/test split."""
    validation: ValidationConfig = ValidationConfig()
    """Limits that send a row to quarantine."""
    bootstrap: BootstrapConfig = BootstrapConfig()
    """The distillation method (``direct`` needs no teacher), the teacher's strategy, and the sizes of the
    disjoint SFT and DPO groups of train dialogues."""
    teacher: TeacherConfig = TeacherConfig()
    """The teacher's endpoint, model, limits and reply cache."""
    student: StudentConfig = StudentConfig()
    """The student's base model (``tiny``: built here, offline)."""
    training: TrainingConfig = TrainingConfig()
    """Which stages run (``sft+dpo``, ``sft``, ``dpo``), the LoRA shape, the SFT and DPO settings, and where
    checkpoints go (a rerun resumes from them)."""
    generation: GenerationSettings = GenerationSettings()
    """How the base, tuned and champion models answer the test prompts."""
    evaluation: EvaluationConfig = EvaluationConfig()
    """Judges, opponents and the invalid threshold."""
    ablation: AblationConfig = AblationConfig()
    """The grid of ``empathy-distill ablation``."""
    tracking: TrackingConfig = TrackingConfig()
    """The MLflow experiment (default: the config's name)."""
    registry: RegistryConfig = RegistryConfig()
    """The registered model, the promotion policy, the promotion history and lock (a database every
    promoter reaches), and serving the champion."""
    schedule: ScheduleConfig = ScheduleConfig()
    """When ``retrain`` runs by itself."""
    stack: str | None = None
    """A stack file (configs/stacks/kubeflow.yaml): its run settings (image, per-step resources) apply to every
    pipeline; ``empathy-distill init --stack-file`` registers the stack it describes. None: the stack as it is."""

    @model_validator(mode="after")
    def _named_by_the_config(self) -> DistillConfig:
        # the registered model and the experiment default to ``name``: new section objects (the defaults are shared
        # between configs), set while this one is being built
        if self.registry.model_name is None:
            object.__setattr__(self, "registry", self.registry.model_copy(update={"model_name": self.name}))
        if self.tracking.experiment is None:
            object.__setattr__(self, "tracking", self.tracking.model_copy(update={"experiment": self.name}))
        return self


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", value parsed as YAML, so numbers and booleans get their types)."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def read_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file as a mapping, with ``extends: <file>`` (relative to this one) merged under it: mappings
    merge key by key, any other value (lists included) replaces the base's."""
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    base = tree.pop("extends", None)
    if base is None:
        return tree
    base_path = (path.parent / str(base)).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"{path}: extends {base}: a config cannot extend itself")
    return _merged(read_tree(base_path, (*seen, path.resolve())), tree)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DistillConfig:
    """Reads a YAML config (or the defaults), with the file it ``extends``, and applies ``key=value`` overrides.

    Raises:
        ConfigError: unreadable YAML, an unknown key or a value of the wrong type.
    """
    tree = read_tree(Path(path)) if path is not None else {}
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    try:
        return DistillConfig.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path or 'config'}: {where}: {first['msg']}") from None
