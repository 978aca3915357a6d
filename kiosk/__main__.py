"""`python -m kiosk`: the command line lives in the composition root (agent/cli.py)."""

import sys

from agent.cli import main

sys.exit(main())
