"""``matrix new agent``: renders the cookiecutter template shipped with the core."""
