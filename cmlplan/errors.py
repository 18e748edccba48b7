"""The one exception family meant for people.

Every error a user can cause (a bad spec, flag, request or state file) is a ``CmlplanError`` whose
message is one line naming where the problem is. The CLI prints it and exits 1; anything else is a
bug and keeps its traceback.
"""


class CmlplanError(Exception):
    """An error meant for the user: its message is one line that names where the problem is."""
