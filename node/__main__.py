"""``python -m node`` is ``hipnode``."""

from node.cli import main

raise SystemExit(main())
