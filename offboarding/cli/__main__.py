"""`python -m offboarding.cli`: the `offboard` command."""

import sys

from offboarding.cli import main

sys.exit(main())
