import sys

from spotter.cli.main import main

sys.exit(main())
