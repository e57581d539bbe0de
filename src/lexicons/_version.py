"""The version of lexicons, read by the package, ``--version`` and the build."""

__version__ = "0.1.0"
