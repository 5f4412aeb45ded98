"""User-facing errors: one line naming the file/line/key at fault and the fix; exit status 2."""


class UserError(Exception):
    """A mistake in the user's input (data, config, paths). The CLI prints it as one line, exit 2."""


def check_label(label: str, labels: list[str], option: str = "label") -> None:
    """A requested label must be one the run knows: one line naming the option otherwise."""
    if label not in labels:
        raise UserError(f"{option} {label!r}: not one of {', '.join(labels)}")
