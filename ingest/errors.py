"""The one exception every stage raises for bad input; the command line turns it into exit 2."""


class PinscopeError(Exception):
    """An error the user can act on; its message names the file, the line and what was expected."""


class InputError(PinscopeError):
    """A trace, mapping or dataset that cannot be read as what it claims to be."""
