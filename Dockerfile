# One image for the six services; the command picks the service (cme-referral, cme-tracking, ...).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 cme
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# The `cme` command (topics, schemas, purge, token, dead letters) is in the development tooling package.
COPY devtools ./devtools
RUN pip install . rocksdict
USER cme
ENV CME_DATA_DIR=/home/cme/data
EXPOSE 8001 8002 8003 8004 8005 8080
CMD ["cme", "--help"]
