"""``python -m ashao_cli``: the ``ashao`` command."""

import sys

from ashao_cli.main import main

sys.exit(main())
