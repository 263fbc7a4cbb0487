"""The tau2 domains: each module has ``domain() -> Domain``."""
