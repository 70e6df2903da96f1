"""``python -m micropl`` runs the command-line interface."""

from micropl.cli import main

raise SystemExit(main())
