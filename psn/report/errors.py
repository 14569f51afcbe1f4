"""The report's error for bad arguments (names, log folders)."""


class ReportError(ValueError):
    """Bad report arguments (names, log folders)."""
