# One image for every Airflow component of Retain: the pinned lock, the retain package, dags, dbt project.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 RETAIN_HOME=/opt/retain
WORKDIR /opt/retain
COPY requirements.lock pyproject.toml README.md ./
RUN python -m pip install "uv==0.13.9" \
 && uv pip sync --system requirements.lock
COPY . .
RUN uv pip install --system --no-deps -e . \
 && useradd --create-home --uid 50000 retain \
 && mkdir -p /opt/retain/data /opt/airflow \
 && chown -R retain /opt/retain /opt/airflow
USER retain
ENV AIRFLOW_HOME=/opt/airflow
