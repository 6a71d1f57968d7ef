"""One module per command (the interface: ``pipelines.cli``); ``cli`` is the entry point."""

from importlib.metadata import PackageNotFoundError, version


def tokenmill_version() -> str:
    """The installed tokenmill version."""
    try:
        return version("tokenmill")
    except PackageNotFoundError:
        return "0+unknown"
