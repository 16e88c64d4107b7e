"""`python -m agent` is `seccomp-agent`."""

import sys

from agent.cli import main

sys.exit(main())
