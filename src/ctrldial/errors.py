"""User-facing errors: one line naming the file/line/key at fault and the fix; exit status 2."""


class UserError(Exception):
    """A mistake in the user's input (data, config, paths). The CLI prints it as one line, exit 2."""
