"""Errors a user can fix (bad path, bad config field); the CLI prints them without a traceback."""


class UserError(ValueError):
    """A mistake in the input the user gave: the message names the file or config field."""
