"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class MechHybridError(Exception):
    """A problem with the user's input (a path, a name, a selection, a shape): never a bug in mechhybrid."""


class UnsupportedFamilyError(MechHybridError):
    """The model's architecture family has no entry in the family table."""
