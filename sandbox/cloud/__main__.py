"""`python -m sandbox.cloud`: the cloud sandbox as a process of its own (see `sandbox.cloud.main`)."""

import sys

from sandbox.cloud import main

sys.exit(main())
