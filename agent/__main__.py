"""`python -m agent` is `seccomp-agent`."""

import sys

from agent.main import main

sys.exit(main())
