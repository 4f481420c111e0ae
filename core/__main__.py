"""``python -m core``: run the core alone."""

from __future__ import annotations

import sys

from core.main import main

sys.exit(main())
