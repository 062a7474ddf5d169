import sys

from rawguard.cli import main

sys.exit(main())
