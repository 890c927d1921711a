"""``python -m pygent``: the same as the ``pygent`` command."""

from pygent.cli import main

raise SystemExit(main())
