"""Failed Ray calls as one readable line."""
from __future__ import annotations

from ..errors import MatrixError


def remote_error(exc: BaseException, context: str = "") -> MatrixError:
    """The error to raise for a failed remote call: a MatrixError raised remotely comes back
    as itself (one line, no remote traceback); anything else as its type and last line."""
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the remote exception
    if isinstance(cause, MatrixError):
        return type(cause)(str(cause))
    return MatrixError(f"{context}{type(cause).__name__}: {last_line(cause)}")


def last_line(exc: BaseException) -> str:
    """The last non-blank line of an error's text (Ray's wrappers put the gist there)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
