"""`ctrldial chat RUN_DIR`: talk with a trained run in the terminal, choosing the act of each reply.

The conversation logic (commands, act, history) is plain Python in ``Conversation``; ``chat`` wires it to
a loaded run and to stdin/stdout, so it also works with piped input.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HELP = "/act NAME [message] sets the act of the replies, /acts lists the acts, /reset clears the history, /quit leaves"


@dataclass
class Conversation:
    labels: list[str]
    max_turns: int
    """Turns of history kept (the run's data.max_context_turns): what the model was trained to see."""
    reply: Callable[[tuple[str, ...], str], str]
    """(context turns, oldest first; act) → the model's response."""
    act: str = ""
    history: list[str] = field(default_factory=list)
    done: bool = False

    def __post_init__(self) -> None:
        self.act = self.act or self.labels[0]

    @property
    def prompt(self) -> str:
        return f"[{self.act}] you> "

    def handle(self, line: str) -> str | None:
        """One line of input → the text to show (None: nothing)."""
        line = line.strip()
        if not line:
            return None
        if line.startswith("/"):
            cmd, _, rest = line.partition(" ")
            if cmd in ("/quit", "/exit", "/q"):
                self.done = True
                return None
            if cmd == "/acts":
                return "acts: " + ", ".join(f"{lab} (current)" if lab == self.act else lab for lab in self.labels)
            if cmd == "/reset":
                self.history.clear()
                return "(history cleared)"
            if cmd == "/help":
                return HELP
            if cmd != "/act":
                return f"unknown command {cmd}; {HELP}"
            name, _, message = rest.strip().partition(" ")
            if not name:
                return f"act: {self.act}"
            if name not in self.labels:
                return f"unknown act {name!r}; acts: {', '.join(self.labels)}"
            self.act = name
            if not message.strip():
                return f"(act: {self.act})"
            line = message.strip()
        self.history.append(line)
        context = tuple(self.history[-self.max_turns :]) if self.max_turns > 0 else ()
        response = self.reply(context, self.act)
        self.history = (self.history + [response])[-max(self.max_turns, 1) :]
        return f"[{self.act}] bot> {response or '(empty reply)'}"


def chat(run_dir: Path, overrides: list[str] | None = None, act: str | None = None) -> None:
    """Load RUN_DIR (base model + its adapter) and chat on stdin/stdout until /quit or end of input."""
    from ctrldial import api

    run_dir = Path(run_dir)
    if act is not None:
        api.check_label(act, api.recorded_labels(run_dir), "--act")  # before the model loads
    bot = api.load(run_dir, overrides)
    cfg = bot.config
    conv = Conversation(bot.labels, cfg.data.max_context_turns, lambda context, a: bot.generate(list(context), a), act=act or "")
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    print(f"chat with {run_dir} — {cfg.model.name}, {cfg.method.name}, acts: {', '.join(conv.labels)}")
    print(f"{HELP}; the model sees the last {conv.max_turns} turns")
    while not conv.done:
        try:
            line = input(conv.prompt)
        except EOFError:
            print()
            break
        if not interactive:
            print(line)  # piped input: echo it, so the transcript reads like a conversation
        shown = conv.handle(line)
        if shown is not None:
            print(shown, flush=True)
