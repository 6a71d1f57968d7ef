"""One module per command (the interface: ``pipelines.cli``); ``cli`` is the entry point."""


def tokenmill_version() -> str:
    """The installed tokenmill version."""
    # importlib.metadata is imported here, not above: every command module imports this package, and it takes
    # ~40 ms that --help and argument errors do not need
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tokenmill")
    except PackageNotFoundError:
        return "0+unknown"
