# Sharecart API against an external PostgreSQL 15+:
#   docker build -t sharecart .
#   docker run -e DATABASE_URL=postgresql://user:pass@db-host:5432/sharecart -p 8000:8000 sharecart
# Migrations are applied at start (safe with several replicas: an advisory lock serializes them).
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY store ./store
COPY service ./service
COPY api ./api
COPY migrations ./migrations
RUN pip install --no-cache-dir . && useradd --system sharecart
USER sharecart
EXPOSE 8000
CMD ["sharecart", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-demo"]
