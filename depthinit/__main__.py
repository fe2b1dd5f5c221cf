import sys

from depthinit.cli import main

sys.exit(main())
