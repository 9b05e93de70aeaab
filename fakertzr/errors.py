"""The one exception type fakertzr raises for errors a user can act on."""


class FakeRtzrError(Exception):
    """A bad fixture, flag, script or request, with a message that says what to fix."""
