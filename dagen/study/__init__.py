"""Studies of many plans at once: ``dagen compare`` and ``dagen search``.

The layer after :mod:`dagen.api`: it builds, checks and estimates plan variants and
weighs them against each other.
"""
