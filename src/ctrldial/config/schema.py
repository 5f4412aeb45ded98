"""The typed config: one dataclass per section. The dataclasses *are* the schema.

Every field has a type and a default; YAML and overrides (``layers.py``) can only set existing fields,
and ``validate`` collects every value problem and raises once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from ctrldial.errors import UserError

ATTRIBUTES = ("act", "emotion", "act+emotion")


@dataclass
class DataConfig:
    path: str = "sample"
    """A DailyDialog folder (original layout), one of its zips, a Parquet file/folder, a Hub dataset id, or `sample` (the shipped demo sample)."""
    attribute: Literal["act", "emotion", "act+emotion"] = "act"
    """What the response is conditioned on and scored for."""
    max_context_turns: int = 4
    """Previous utterances kept as context (the first experiments cut at 4)."""
    max_train_examples: int | None = None
    """Budget: sample at most this many training examples (None = all)."""
    max_eval_examples: int = 500
    """Contexts evaluated (a fixed, seeded sample of the `eval.split` split); each is asked for every label."""
    max_valid_examples: int = 200
    """Validation examples used for the validation loss."""
    dedup: bool = True
    """Remove validation/test dialogues whose text also occurs in train."""
    normalize: bool = True
    """Turn the pre-tokenised corpus text (`I ’ m fine , thanks .`) into natural text (`I'm fine, thanks.`)."""
    on_error: Literal["raise", "skip"] = "raise"
    """Malformed dialogues: stop with an error naming file and line, or skip them and report how many."""
    balance: bool = True
    """Sample training examples balanced over the target label (the corpus is 45% inform)."""
    label_position: Literal["first", "before_response"] = "before_response"
    """Where the label goes: `first` (label, context, response) or `before_response` (context, label, response)."""
    separator: str = "eos"
    """Turn separator: `eos` (the tokenizer's end-of-sequence token, DialoGPT style) or a literal string such as "\\n"."""
    label_style: Literal["word", "special"] = "word"
    """Labels as plain words (`question`) or as added special tokens (`<|question|>`)."""
    label_words: dict[str, str] = field(default_factory=dict)
    """Optional text per label, e.g. {question: "Ask a question:"}; defaults to the label name."""
    template: Literal["plain", "chat"] = "plain"
    """`plain`: turns joined by the separator; `chat`: the tokenizer's chat template with the label stated as an instruction."""
    label_dropout: float = 0.0
    """Classifier-free guidance training: this share of training examples gets the null label (the prompt
    without its label), so one model learns the conditional and the unconditional reply."""
    extra_train: str | None = None
    """A JSONL file of extra training examples, added to the sampled ones (not counted in `max_train_examples`):
    `{"context": ["turn", ...], "response": "...", "act": "commissive"}` per line (`emotion` for emotion, both for
    act+emotion), e.g. counterfactual responses. The run's training-data fingerprint covers them."""
    max_length: int | None = 128
    """Cap on tokens per training example (prompt + response), on top of the model's positions; the context is cut from the left."""
    seed: int = 0
    """Seed for the example samples (train budget, eval contexts)."""


@dataclass
class ModelConfig:
    name: str = "smollm2-135m"
    """An alias (dialogpt-small|medium|large, smollm2-135m), a Hub id, or a local folder."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype: `auto` = float32 master weights, with speed from autocast (train.mixed_precision)."""
    max_positions: int | None = None
    """Override the model's maximum positions (default: read from its config)."""
    trust_remote_code: bool = False
    """Allow model code from the Hub to run. Off unless you trust the source."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin."""
    attn_implementation: str | None = None
    """e.g. `sdpa` or `eager`; None lets transformers choose."""


@dataclass
class MethodConfig:
    name: str = "lora"
    """A registered method: zero_shot, full, lora, qlora, prefix, prompt, p_tuning, ia3, adalora, peft."""
    num_virtual_tokens: int = 20
    """Prefix / prompt / P-tuning: virtual tokens prepended to every sequence."""
    r: int = 16
    """LoRA / AdaLoRA / QLoRA rank."""
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None
    """Modules to adapt; None = chosen per architecture (all linear layers of attention and MLP)."""
    prefix_projection: bool = False
    """Prefix tuning: reparameterise the prefix through an MLP (more stable, more parameters at train time)."""
    prompt_init: Literal["random", "text"] = "text"
    """Prompt tuning: virtual tokens start as the embeddings of `prompt_init_text` (or random).
    Prefix tuning (without projection): the prefix starts as the base model's keys/values for that text (or random)."""
    prompt_init_text: str = "Reply to the conversation with the requested dialogue act:"
    encoder_hidden_size: int = 128
    """P-tuning: hidden size of the prompt encoder."""
    peft_type: str | None = None
    """Generic `peft` method: the PEFT config class name, e.g. `LoHaConfig`."""
    peft_kwargs: dict[str, Any] = field(default_factory=dict)
    """Generic `peft` method: keyword arguments for that config class."""


@dataclass
class TrainConfig:
    lr: float | None = None
    """Peak learning rate; None = the method's default."""
    batch_size: int = 8
    grad_accum: int = 1
    """Gradient accumulation steps per optimizer step."""
    max_steps: int | None = 250
    """Budget: optimizer steps (None = run `epochs` epochs)."""
    epochs: float = 1.0
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 50
    """Validation loss every N optimizer steps."""
    patience: int = 5
    """Early stopping: evaluations without improvement before stopping (0 = off)."""
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """`auto` = bf16 where the hardware has it (CUDA bf16, CPU AMX), else fp32."""
    seed: int = 0
    tracker: Literal["tensorboard", "wandb", "mlflow", "none"] = "tensorboard"
    group_by_length: bool = True
    """Length-grouped batches: fewer pad tokens, same examples per epoch."""
    packing: bool = True
    """Padding-free training: a micro-batch's examples packed end to end in rows, position ids restarting per
    example, logits only where there is a target. Methods with virtual tokens (prefix, prompt, P-tuning) keep
    padded batches."""
    pack_tokens: int = 128
    """Widest packed row (a longer example sets the width instead): attention costs a row's length squared."""


@dataclass
class GenerateConfig:
    max_new_tokens: int = 32
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 32
    repetition_penalty: float = 1.0
    guidance_scale: float = 1.0
    """Classifier-free guidance on the label: next-token logits = uncond + scale * (cond - uncond); 1 = plain decoding."""
    guidance_negative: Literal["null", "other_labels"] = "null"
    """The unconditional side: `null` (the prompt without its label; train with data.label_dropout) or
    `other_labels` (the mean of the other labels' logits; works on any run)."""
    top_k: int = 50
    """Sampling: keep the k most likely tokens (0 = off), before top_p (Hugging Face's default order and value)."""
    seed: int = 0
    """Seed of the draws when ctrldial's loop samples (reranked candidates, guided sampling)."""
    num_candidates: int = 1
    """Reranking: sample this many responses per request and keep the one `rerank_classifier` finds most likely of the
    requested label (ties: the model's likelihood). Needs do_sample=true."""
    rerank_classifier: str | None = None
    """The discriminator that reranks candidates: a classifier folder that is NOT the judge (classifier.path) and was
    trained on other dialogues (e.g. classifier.train_split=validation)."""
    rerank_min_prob: float | None = None
    """Reranking that also weighs fluency: among the candidates the discriminator gives the requested label with
    probability >= this, keep the most likely under the model (mean log-likelihood per token); when none reaches it,
    the most probable of the label as without it. None = always the most probable of the label."""
    rerank_avoid_repeats: bool = False
    """Reranking that avoids loops: a candidate that repeats a word 3-gram (the `repetition_rate` metric's test) is
    kept only when every candidate does; the rule above chooses among the others."""


@dataclass
class EvalConfig:
    labels: list[str] | None = None
    """Labels every context is asked for (None = all labels of the attribute)."""
    perplexity: bool = True
    """Perplexity of the reference responses under the tuned model."""
    generation_perplexity: bool = True
    """Perplexity of the generated responses under the untuned base model (fluency; loads a second copy of the model)."""
    sanity_prompts: int = 4
    """Fixed prompts on which tuned and base generations are compared (0 = skip)."""
    split: Literal["test", "validation"] = "test"
    """The contexts generated for and scored: a seeded sample of `data.max_eval_examples` test contexts, or validation
    ones (`ctrldial tune` sets this, so choosing hyper-parameters never sees a test context)."""


@dataclass
class ClassifierConfig:
    model: str = "minilm-l6"
    """Encoder to fine-tune: `minilm-l6` or `mpnet-base` (offline packages, see models.ENCODER_ALIASES), a Hub id or a
    local folder."""
    path: str | None = None
    """A trained classifier folder used to score generations."""
    unsure_below: float = 0.0
    """Scoring: a verdict whose confidence (max softmax probability) is below this is `unsure`, counted apart
    and never as a hit (0 = off). Choose it on development labels: `ctrldial judge agreement` lists thresholds."""
    context: Literal["none", "previous"] = "none"
    """Input: the utterance alone, or (previous turns, utterance) as a sentence pair."""
    context_turns: int = 1
    """With context=previous: how many earlier utterances form the first segment (joined by [SEP]; the oldest
    are dropped first when the pair passes max_length)."""
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float = 1e-4
    """1e-4 gave the same accuracy as 5e-5 on a 3k budget but a better macro-F1 (benchmarks/classifier)."""
    batch_size: int = 32
    max_length: int = 96
    eval_every: int = 200
    class_weights: bool = False
    """Weight the loss by inverse class frequency (useful for emotion: 83% is 'no emotion')."""
    class_weight_power: float = 1.0
    """With class_weights: each weight is (N / (K · n_c)) ** power. 1 balances the classes fully (DailyDialog's
    emotions: fear weighs about 500x more than no emotion); 0.5 softens that, so rare classes are not over-called."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing (0 = off): spreads this much of the target mass over all classes."""
    train_split: Literal["train", "validation"] = "train"
    """The split the classifier learns from. `validation` makes a reranker that shares no dialogue with a judge trained
    on the train split (it then checks itself on train utterances)."""
    train_dialogues: Literal["all", "first_half", "second_half"] = "all"
    """Which train dialogues the classifier learns from: a reranker and the judge must never share data
    (train one on `first_half`, the other on `second_half`)."""
    extra_train: str | None = None
    """A JSONL file of hand-labelled generated responses (`ctrldial judge agreement` format) added to training,
    e.g. benchmarks/judge/labels-dev.jsonl: data closer to what the judge will score."""
    extra_repeats: int = 1
    """How many times each extra_train example is repeated (its weight against the corpus utterances)."""
    warmup_ratio: float = 0.06
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """Training autocast: `auto` = bf16 on CUDA with bf16 or a CPU with AMX/AVX512-BF16, else fp32."""
    seed: int = 0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of the resolved config: the same config always hashes the same."""
        blob = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


# (key, accepts the value, what the value must be): checks that types cannot express
_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("data.max_context_turns", lambda v: v >= 0, ">= 0"),
    ("data.max_train_examples", lambda v: v is None or v > 0, "> 0 or null"),
    ("data.max_eval_examples", lambda v: v > 0, "> 0"),
    ("data.max_length", lambda v: v is None or v >= 8, ">= 8 or null"),
    ("train.pack_tokens", lambda v: v >= 8, ">= 8 (128 is the default)"),
    ("data.label_dropout", lambda v: 0 <= v < 1, "in [0, 1) (0.1 is the usual value)"),
    ("generate.guidance_scale", lambda v: v >= 0, ">= 0 (1 = no guidance; 1.5 to 3 is the usual range)"),
    ("train.batch_size", lambda v: v > 0, "> 0 (try 8)"),
    ("train.grad_accum", lambda v: v > 0, "> 0"),
    ("train.lr", lambda v: v is None or v > 0, "> 0 (or null for the method's default)"),
    ("train.max_steps", lambda v: v is None or v >= 0, ">= 0 or null"),
    ("train.epochs", lambda v: v > 0, "> 0"),
    ("train.warmup_ratio", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.eval_every", lambda v: v > 0, "> 0"),
    ("train.patience", lambda v: v >= 0, ">= 0"),
    ("generate.max_new_tokens", lambda v: v > 0, "> 0"),
    ("generate.batch_size", lambda v: v > 0, "> 0"),
    ("generate.num_beams", lambda v: v > 0, "> 0"),
    ("generate.num_candidates", lambda v: v >= 1, ">= 1 (1 = no reranking)"),
    ("generate.rerank_min_prob", lambda v: v is None or 0 < v <= 1, "a probability in (0, 1], or null"),
    ("generate.top_k", lambda v: v >= 0, ">= 0 (0 = off)"),
    ("method.num_virtual_tokens", lambda v: v >= 0, ">= 0"),
    ("method.r", lambda v: v > 0, "> 0"),
    ("classifier.batch_size", lambda v: v > 0, "> 0"),
    ("classifier.lr", lambda v: v > 0, "> 0"),
    ("classifier.epochs", lambda v: v > 0, "> 0"),
    ("classifier.max_steps", lambda v: v is None or v > 0, "> 0 or null (null = run classifier.epochs epochs)"),
    ("classifier.unsure_below", lambda v: 0 <= v < 1, "in [0, 1) (0 = off; a confidence is at most 1, so 1 would mark every verdict unsure)"),
    ("classifier.eval_every", lambda v: v > 0, "> 0"),
    ("classifier.max_length", lambda v: v >= 8, ">= 8 (64 covers almost every DailyDialog utterance)"),
    ("classifier.context_turns", lambda v: v >= 1, ">= 1 (the number of earlier utterances fed with context=previous)"),
    ("classifier.warmup_ratio", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("classifier.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1) (0.1 is the usual value)"),
    ("classifier.class_weight_power", lambda v: 0 < v <= 2, "in (0, 2] (1 = inverse frequency, 0.5 = its square root)"),
    ("classifier.extra_repeats", lambda v: v >= 1, ">= 1"),
]


def validate(cfg: Config) -> None:
    """Value checks that types cannot express; every problem is reported at once."""
    p: list[str] = []
    for key, ok, must in _RULES:
        section, name = key.split(".")
        if not ok(getattr(getattr(cfg, section), name)):
            p.append(f"{key} must be {must}")
    from ctrldial.methods import METHODS  # late import: methods import torch/peft

    if cfg.method.name not in METHODS:
        p.append(f"method.name: unknown method {cfg.method.name!r}; choose one of {', '.join(sorted(METHODS))}")
    p += _decoding_problems(cfg)
    if p:
        raise UserError("config: " + "; ".join(p))


def _decoding_problems(cfg: Config) -> list[str]:
    """Decoding options that do not go together, and a reranker that is the judge."""
    from pathlib import Path

    g, p = cfg.generate, []
    if g.num_beams != 1 and (g.guidance_scale != 1 or g.num_candidates > 1):
        p.append("generate.guidance_scale / generate.num_candidates run in ctrldial's own decoding loop: set generate.num_beams=1")
    if g.num_candidates > 1 and not g.do_sample:
        p.append("generate.num_candidates > 1 needs generate.do_sample=true (greedy candidates are all the same)")
    if g.num_candidates > 1 and not g.rerank_classifier:
        p.append("generate.num_candidates > 1 needs generate.rerank_classifier (a classifier trained on other dialogues than the judge)")
    if g.rerank_min_prob is not None and g.num_candidates == 1:
        p.append("generate.rerank_min_prob needs reranking: set generate.num_candidates and generate.rerank_classifier")
    if g.rerank_avoid_repeats and g.num_candidates == 1:
        p.append("generate.rerank_avoid_repeats needs reranking: set generate.num_candidates and generate.rerank_classifier")
    if g.rerank_classifier and g.num_candidates == 1:
        p.append("generate.rerank_classifier has nothing to rerank: set generate.num_candidates (e.g. 8)")
    if g.rerank_classifier and cfg.classifier.path and Path(g.rerank_classifier).resolve() == Path(cfg.classifier.path).resolve():
        p.append(f"generate.rerank_classifier is the judge ({cfg.classifier.path}): the judge must never choose the outputs it "
                 "scores; rerank with a classifier trained on other dialogues (classifier.train_split=validation)")
    return p
