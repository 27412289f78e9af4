"""`python -m tmrlx ...`: the same as the `tmrlx` command."""

import sys

from tmrlx.cli import main

sys.exit(main())
