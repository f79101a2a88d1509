"""The one exception type for problems a user can cause with data: paths, files, shapes, dtypes."""


class DataError(ValueError):
    """Bad data input: the message names the file or folder, what was found and how to fix it."""
