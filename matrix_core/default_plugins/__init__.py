"""The defaults that make ``matrix run`` work, one module per concern.

Each module is a plugin registered through the same hooks as third-party plugins (as
``core.<module>``), so ``matrix plugins`` lists them and ``-p no:core.loaders`` can block one.
"""

DEFAULT_PLUGINS = ("loaders", "llm_backends", "config_dirs", "commands")
