"""The base of every error aptune raises for bad input; its message names the problem and the fix."""


class AptuneError(ValueError):
    """Bad input (config, data, model, files): the command line prints the message, not a traceback."""
