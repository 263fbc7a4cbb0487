"""``matrix new agent``: renders the cookiecutter template shipped with the core."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError

# The name becomes a module suffix, an entry-point name, a Hydra config name and agent type prefix.
_NAME = re.compile(r"[a-z][a-z0-9_]*")
# matrix_core/templates links to the repo's templates/ in a checkout; a wheel holds a copy.
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def render_agent_plugin(name: str, output_dir: str, **context: str) -> Path:
    """Render the agent-plugin template as ``OUTPUT_DIR/matrix-plugin-NAME``; returns that folder.

    ``context`` overrides other template variables (``description``, ``author``).
    """
    from cookiecutter.main import cookiecutter

    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"invalid plugin name {name!r}: use lowercase letters, digits and underscores, starting with a letter"
        )
    from ..plugins import get_plugin_host

    taken = get_plugin_host().registry("workflow")
    if name in taken:
        raise ConfigError(f"a workflow named {name!r} is already installed (from {taken[name].package}); choose another name")
    template = TEMPLATES / "agent"
    if not (template / "cookiecutter.json").is_file():
        raise ConfigError(f"the agent template is missing from this matrix-core install ({template})")
    target = Path(output_dir) / f"matrix-plugin-{name.replace('_', '-')}"
    if target.exists():
        raise ConfigError(f"{target} already exists; remove it or choose another -o folder")
    # default_config: ignore ~/.cookiecutterrc so the same name always renders the same package.
    try:
        created = cookiecutter(
            str(template),
            no_input=True,
            extra_context={**context, "name": name},
            output_dir=str(output_dir),
            default_config=True,
        )
    except OSError as exc:
        raise ConfigError(f"cannot create {target}: {exc.strerror or exc}") from None
    return Path(created)
