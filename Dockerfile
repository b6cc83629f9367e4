# The incentive processor (Faust worker, CLI, ClickHouse migrations), for docker-compose.yml.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INCENTIVES_HOME=/var/lib/incentives \
    INCENTIVES_PROGRAM=/app/deploy/programs/default.yaml \
    INCENTIVES_WEB_HOST=0.0.0.0 \
    INCENTIVES_WEB_PORT=6066

WORKDIR /app

# The code reads its data files (Avro schemas, program rules, SQL migrations) from the source tree,
# so the project is installed in place (editable) with everything it reads beside it.
COPY pyproject.toml README.md ./
COPY processor/ processor/
COPY projections/ projections/
COPY schemas/ schemas/
COPY deploy/ deploy/
RUN pip install -e . \
 && useradd --system --home-dir /var/lib/incentives --create-home incentives

USER incentives
WORKDIR /var/lib/incentives
EXPOSE 6066

HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=6 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:6066/ready', timeout=2); sys.exit(0)"

CMD ["faust", "-A", "processor.stream.app", "worker", "-l", "info", \
     "--web-port", "6066", "--web-bind", "0.0.0.0", "--web-host", "processor"]
