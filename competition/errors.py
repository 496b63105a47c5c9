"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A problem with the user's input or environment.

    The command line prints its message as one line (``error: ...``) and exits
    with status 2, without a traceback. The message names the file or setting
    at fault and says how to fix it.
    """
