"""``python -m micropl`` runs the command-line interface."""

from micropl.acquisition.cli import main

raise SystemExit(main())
