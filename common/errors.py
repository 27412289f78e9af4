"""The one exception every user-facing configuration problem raises.

It lives apart from `config` so that modules the schema itself imports (the environment-kind
registry) can raise it without an import cycle.
"""


class ConfigError(ValueError):
    """A bad configuration value; the message names the key, the value and what was expected."""
