"""``python -m dagen``."""

from dagen.cli import main

main()
