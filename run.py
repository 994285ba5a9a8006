"""Start the server: ``python run.py [--host H] [--port P] [--workers N|auto]``.

Settings come from the environment (see config/settings.py); the flags
override HOST and PORT. Without DATABASE_URL / REDIS_URL, an embedded
PostgreSQL and Redis are started under DATA_DIR (./.data) and stopped on exit.
Serving, draining on SIGTERM and supervising ``--workers`` live in
proximity_server/runtime/serve.py.
"""

import sys

from proximity_server.runtime.serve import main

if __name__ == "__main__":
    sys.exit(main())
