"""aicall's exception types: one for what a user can act on, and the auth failure a call survives."""


class AicallError(Exception):
    """An expected error with a message a user can act on (CLIs print it as one line, exit 2)."""


class ConfigError(AicallError):
    """A missing or malformed setting; the message names the variable."""


class RtzrAuthError(AicallError):
    """RTZR refused our credentials or token (token endpoint 401/5xx, or handshake 401 twice)."""
