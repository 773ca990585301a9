import sys

from metricanything.cli import main

sys.exit(main())
