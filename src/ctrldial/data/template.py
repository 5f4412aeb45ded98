"""Examples → token ids and loss masks, under a configurable template.

``plain`` layouts (``S`` = separator, by default the tokenizer's eos):

- ``first``:           ``label S ctx1 S ctx2 S`` + ``response <eos>``   (the first experiments' layout)
- ``before_response``: ``ctx1 S ctx2 S label S`` + ``response <eos>``

``chat`` states the requested label as an instruction through the tokenizer's chat template.

Only the response and its final eos carry loss; everything else is -100. The eos that ends the response is
the real end-of-sequence token and is always in the loss, even when pad == eos (GPT-2): masking by
"token == pad" is what taught the first experiments' models to stop at once.

The context is truncated from the left, whole utterances first, never the label or the response, so that
virtual tokens + prompt + new tokens fit the model's positions.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctrldial.config import DataConfig
from ctrldial.errors import UserError

IGNORE = -100

ACT_INSTRUCTIONS = {
    "inform": "a statement that gives information or an opinion",
    "question": "a question",
    "directive": "a request, an instruction or a suggestion",
    "commissive": "a promise, an offer, or an acceptance or refusal of a request",
}


def describe(label: str) -> str:
    """Natural-language description of a label for instructions (chat template, prompt-tuning init)."""
    parts = []
    for piece in label.split("+"):
        if piece in ACT_INSTRUCTIONS:
            parts.append(ACT_INSTRUCTIONS[piece])
        elif piece == "no_emotion":
            parts.append("in a neutral tone")
        else:
            parts.append(f"expressing {piece}")
    return " ".join(parts)


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


class Template:
    def __init__(
        self,
        tokenizer,
        cfg: DataConfig,
        labels: list[str],
        max_positions: int,
        num_virtual_tokens: int = 0,
        max_new_tokens: int = 32,
    ):
        self.tok = tokenizer
        self.cfg = cfg
        self.labels = labels
        self.max_positions = max_positions
        self.num_virtual_tokens = num_virtual_tokens
        self.max_new_tokens = max_new_tokens
        if tokenizer.eos_token_id is None:
            raise UserError("model.name: the tokenizer has no eos token; ctrldial needs one to end responses")
        self.eos = tokenizer.eos_token_id
        if cfg.template == "chat" and not getattr(tokenizer, "chat_template", None):
            raise UserError("data.template=chat: this tokenizer has no chat template; use data.template=plain")
        unknown = sorted(set(cfg.label_words) - set(labels))
        if unknown:
            raise UserError(f"data.label_words: unknown label(s) {', '.join(unknown)}; labels are {', '.join(labels)}")
        self.special_tokens = [f"<|{lab}|>" for lab in labels] if cfg.label_style == "special" else []
        if self.special_tokens:
            tokenizer.add_special_tokens({"additional_special_tokens": self.special_tokens})
        self.sep = [self.eos] if cfg.separator == "eos" else self._enc(cfg.separator.encode().decode("unicode_escape"))
        if self.prompt_budget(max_new_tokens) < 1:
            raise UserError(
                f"generate.max_new_tokens={max_new_tokens} + method.num_virtual_tokens={num_virtual_tokens} leave no room "
                f"for a prompt in the model's {max_positions} positions; lower one of them"
            )

    # -- pieces -----------------------------------------------------------------------------------
    def _enc(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def label_text(self, label: str) -> str:
        if self.special_tokens:
            return f"<|{label}|>"
        return self.cfg.label_words.get(label, label)

    def response_ids(self, response: str) -> list[int]:
        return self._enc(response) + [self.eos]

    def prompt_budget(self, reserve: int) -> int:
        """Tokens a prompt may use when ``reserve`` tokens follow it (new tokens or the response)."""
        limit = self.max_positions - self.num_virtual_tokens
        return limit - reserve

    # -- layouts ----------------------------------------------------------------------------------
    def _plain(self, context: list[list[int]], label: str | None) -> list[int]:
        lab = [] if label is None else self._enc(self.label_text(label)) + self.sep
        ctx = [t for seg in context for t in seg + self.sep]
        return lab + ctx if self.cfg.label_position == "first" else ctx + lab

    def _chat(self, context: list[str], label: str | None) -> list[int]:
        instruction = "" if label is None else f"Reply to the conversation with {describe(label)}."
        if label is not None and self.cfg.label_words.get(label):
            instruction = self.cfg.label_words[label]
        messages = []
        if self.cfg.label_position == "first" and instruction:
            messages.append({"role": "system", "content": instruction})
        # the last context turn is the user's; earlier turns alternate backwards
        n = len(context)
        for i, utt in enumerate(context):
            messages.append({"role": "user" if (n - 1 - i) % 2 == 0 else "assistant", "content": utt})
        if not context or messages[-1]["role"] != "user":
            messages.append({"role": "user", "content": ""})
        if self.cfg.label_position == "before_response":
            messages[-1]["content"] = (messages[-1]["content"] + "\n" + instruction).strip()
        ids = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def _prompt_fitting(self, context: tuple[str, ...], label: str | None, budget: int) -> list[int] | None:
        """The prompt with as much (most recent) context as fits ``budget`` tokens; None if none fits."""
        ctx = list(context)
        if self.cfg.template == "chat":
            while True:
                ids = self._chat(ctx, label)
                if len(ids) <= budget:
                    return ids
                if not ctx:
                    return None
                ctx = ctx[1:]
        segs = [self._enc(u) for u in ctx]
        while True:
            ids = self._plain(segs, label)
            if len(ids) <= budget:
                return ids
            if len(segs) > 1:
                segs = segs[1:]  # drop the oldest whole utterance
            elif segs:
                over = len(ids) - budget
                keep = len(segs[0]) - over
                if keep <= 0:
                    segs = []
                else:
                    segs = [segs[0][-keep:]]  # last resort: the tail of the one remaining utterance
            else:
                return None

    # -- public -----------------------------------------------------------------------------------
    def prompt_ids(self, context: tuple[str, ...] | list[str], label: str | None) -> list[int]:
        """Prompt for generation: virtual tokens + prompt + max_new_tokens fit the model's positions.

        ``label=None`` is the null label of classifier-free guidance: the same prompt without its label (no
        label text and no separator after it; in the chat template, no instruction).
        """
        ids = self._prompt_fitting(tuple(context), label, self.prompt_budget(self.max_new_tokens))
        if ids is None:
            raise UserError(f"label {label!r} alone does not fit the model's positions; lower generate.max_new_tokens")
        return ids

    def train_ids(self, context: tuple[str, ...] | list[str], label: str | None, response: str) -> Encoded | None:
        """Full training sequence and loss mask; None when even the response alone does not fit (``label=None``:
        the null label, see ``prompt_ids``)."""
        resp = self.response_ids(response)
        limit = self.max_positions - self.num_virtual_tokens
        if self.cfg.max_length:
            limit = min(limit, self.cfg.max_length)
        prompt = self._prompt_fitting(tuple(context), label, limit - len(resp))
        if prompt is None:
            return None
        return Encoded(prompt + resp, [IGNORE] * len(prompt) + resp)
