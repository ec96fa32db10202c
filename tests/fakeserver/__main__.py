"""``python -m tests.fakeserver --port 8000 [--provider NAME] ...``: see `tests.fakeserver.cli`."""

import sys

from tests.fakeserver.cli import main

sys.exit(main())
