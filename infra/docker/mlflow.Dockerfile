# syntax=docker/dockerfile:1.7
# The MLflow tracking server of infra/k8s (PostgreSQL backend, artifacts proxied to MinIO/S3, optional basic
# auth). The versions requirements.lock pins: MLflow, and SQLAlchemy with the PostgreSQL driver it opens
# postgresql:// URIs with (psycopg 3 since SQLAlchemy 2.1; psycopg2 would fail at the first connection), boto3 for S3.
#   docker build -f infra/docker/mlflow.Dockerfile -t REGISTRY/productgan-mlflow:3.17.2 infra/docker
FROM python:3.11.10-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN pip install "mlflow[auth]==3.17.2" "SQLAlchemy==2.1.9" "psycopg[binary]==3.3.6" "boto3==1.43.117"

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin mlflow
WORKDIR /home/mlflow
USER 10001:10001
EXPOSE 5000
ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000"]
