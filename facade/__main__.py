"""``python -m facade``: run the HTTP facade alone."""

from __future__ import annotations

import sys

from facade.main import main

sys.exit(main())
