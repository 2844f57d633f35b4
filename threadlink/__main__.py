import sys

from threadlink.cli import main

sys.exit(main())
