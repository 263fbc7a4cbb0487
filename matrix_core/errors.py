class MatrixError(Exception):
    """A user-facing error: its message is one readable line, printed without a traceback."""


class ConfigError(MatrixError):
    """Bad configuration: unknown key, bad value, unknown plugin name."""
