import sys

from mosel.cli.main import main

sys.exit(main())
