# syntax=docker/dockerfile:1.7
# The MLflow tracking server of infra/k8s (PostgreSQL backend, artifacts proxied to MinIO/S3, optional basic
# auth). The same MLflow version the project pins; psycopg2 for PostgreSQL, boto3 for S3.
#   docker build -f infra/docker/mlflow.Dockerfile -t REGISTRY/productgan-mlflow:3.17.2 infra/docker
FROM python:3.11.10-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN pip install "mlflow[auth]==3.17.2" "psycopg2-binary==2.9.10" "boto3==1.43.117"

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin mlflow
WORKDIR /home/mlflow
USER 10001:10001
EXPOSE 5000
ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000"]
