"""medmon: a passive network monitor for hospital networks.

The import package is ``monitor``; the distribution and the command are ``medmon``.
"""

__version__ = "0.1.0"
