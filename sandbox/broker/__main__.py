"""`python -m sandbox.broker [--config queues.json] [--host H] [--port N]`: the broker as a process."""

from sandbox.broker import main

raise SystemExit(main())
