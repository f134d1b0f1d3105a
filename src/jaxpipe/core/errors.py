"""The one exception type a stage turns into a one-line error and a non-zero exit."""


class JaxpipeError(Exception):
    """A user-facing failure: bad input, bad config, a failed download or training."""


class ConfigError(JaxpipeError):
    """A params value is missing, unknown or of the wrong type."""


class DownloadError(JaxpipeError):
    """No source delivered a file that passes verification."""
