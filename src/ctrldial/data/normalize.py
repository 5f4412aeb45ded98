"""Turn DailyDialog's pre-tokenised text into natural text, deterministically.

``Hello , how are you ?`` → ``Hello, how are you?``; ``I ’ m`` → ``I'm``. Generators are trained on and
judged by natural text, which is also what a user types in ``ctrldial chat``.
"""

from __future__ import annotations

import re

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"[‘’`´]"), "'"),
    (re.compile(r"[“”]"), '"'),
    # ellipses: ". . ." or ".." spaced out
    (re.compile(r"\.(?:\s*\.)+"), lambda m: "..." if m.group(0).count(".") >= 3 else ".."),  # type: ignore[list-item]
    # clitics: "I ' m", "don ' t", "can 't", "it 's", "do n't"
    (re.compile(r"(\w)\s*'\s*(m|s|re|ve|ll|d|t)\b", re.IGNORECASE), r"\1'\2"),
    (re.compile(r"(\w)\s+(n't)\b", re.IGNORECASE), r"\1\2"),
    # numbers: "1 , 000" → "1,000", "3 . 5" → "3.5", "$ 5" → "$5", "5 %" → "5%"
    (re.compile(r"(\d)\s*,\s*(\d{3})\b"), r"\1,\2"),
    (re.compile(r"(\d)\s+\.\s+(\d)"), r"\1.\2"),
    (re.compile(r"([$£€¥#])\s+(\d)"), r"\1\2"),
    (re.compile(r"(\d)\s+%"), r"\1%"),
    # no space before closing punctuation, none after opening brackets
    (re.compile(r"\s+([,.!?;:)\]}])"), r"\1"),
    (re.compile(r"([(\[{])\s+"), r"\1"),
    # a space after sentence punctuation glued to a following word (",and" → ", and"), not inside numbers/abbrevs
    (re.compile(r"([,;!?])(?=[A-Za-z])"), r"\1 "),
]

_QUOTE = re.compile(r'"\s*(.*?)\s*"')


def normalize_text(text: str) -> str:
    """Detokenise one utterance. Idempotent: normalising twice gives the same text."""
    out = text
    for pattern, repl in _RULES:
        out = pattern.sub(repl, out)
    # paired double quotes hug their content: `" yes "` → `"yes"`
    out = _QUOTE.sub(lambda m: f'"{m.group(1)}"', out)
    out = re.sub(r"\s{2,}", " ", out).strip()
    return out
