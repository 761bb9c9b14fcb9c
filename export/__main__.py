"""``python -m export``: see ``export/cli.py`` and docs/EXPORT.md."""
import sys

from .cli import main

sys.exit(main())
