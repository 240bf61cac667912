# syntax=docker/dockerfile:1
# One image for every Python service of docker-compose.yaml (Airflow components, Celery workers,
# bucket-init, serving): the project's pinned requirements on python:3.11-slim.
#
#   docker build -t mlops-pipelines .                                   # CPU torch (requirements.txt pin)
#   docker build -t mlops-pipelines-gpu --build-arg TORCH_VARIANT=cu128 .   # CUDA torch, GPU worker
#
# TORCH_VARIANT names a wheel index of download.pytorch.org (cpu, cu126, cu128, ...): the pin
# torch==X+cpu in requirements.txt becomes torch==X+<variant>, every other pin stays as it is.
FROM python:3.11-slim-bookworm

ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl
ARG AIRFLOW_UID=50000

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    PYTHONPATH=/opt/app:/opt/app/plugins \
    PIPELINE_CONFIG=/opt/app/config/pipeline.yaml \
    HF_HUB_OFFLINE=1

# curl: the compose healthchecks; libgomp1: torch's OpenMP runtime on slim images
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/app
COPY requirements.txt requirements-nodeps.txt /opt/app/
RUN sed -E "s/^torch==([^+]+)\+cpu$/torch==\1+${TORCH_VARIANT}/" requirements.txt > /tmp/requirements.txt \
 && pip install --extra-index-url "${TORCH_INDEX_URL}/${TORCH_VARIANT}" -r /tmp/requirements.txt \
 && pip install --no-deps -r requirements-nodeps.txt \
 && python -c "import torch, airflow; print('torch', torch.__version__)" \
 && rm /tmp/requirements.txt

# Code last: editing a DAG does not reinstall the requirements.
COPY pipelines /opt/app/pipelines
COPY dags /opt/app/dags
COPY plugins /opt/app/plugins
COPY config /opt/app/config
COPY expectations /opt/app/expectations
COPY scripts /opt/app/scripts
COPY deploy /opt/app/deploy

# The C extensions (dedup hasher, sensitive-word scanner); the compiler and headers leave with the layer's end.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
 && python -m pipelines.native \
 && python -m pipelines.native --check \
 && apt-get purge -y --auto-remove gcc libc6-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

# Airflow's convention: uid 50000, group 0, so an arbitrary uid (OpenShift) can still write.
RUN useradd --uid "${AIRFLOW_UID}" --gid 0 --home-dir /opt/airflow --create-home airflow \
 && mkdir -p /opt/airflow/logs /opt/airflow/auth \
 && chown -R "${AIRFLOW_UID}:0" /opt/airflow \
 && chmod -R g+rwX /opt/airflow
USER ${AIRFLOW_UID}:0

EXPOSE 8080
CMD ["python", "-m", "pipelines", "--help"]
