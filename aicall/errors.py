"""aicall's exception types: one for what a user can act on, and the auth failure a call survives."""


class AicallError(Exception):
    """An expected error with a message a user can act on (CLIs print it as one line, exit 2)."""


class ConfigError(AicallError):
    """A missing or malformed setting; the message names the variable."""


class RtzrAuthError(AicallError):
    """RTZR refused our credentials or token (token endpoint 400/401/403, handshake 401 twice), or
    no token could be had for ``TOKEN_UNAVAILABLE_GIVE_UP_S``: the call cannot be recognised."""


class RtzrUnavailable(AicallError):
    """The token endpoint failed in a way that may pass (429, 5xx, network, a bad body): retry."""
