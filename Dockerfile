# The project image: the API/dashboard, the study worker, the migration and the Ray nodes all
# run it, so that every Ray node has the same Python, Ray and PyTorch.
FROM python:3.11-slim

# PyTorch's CPU build by default; a GPU image passes the CUDA index of its driver, e.g.
#   docker compose build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NANOSD_NAS_HOME=/data/home

WORKDIR /app
RUN pip install "torch==2.13.0" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md ./
COPY spaces spaces
COPY latency_models latency_models
COPY search search
COPY dashboards dashboards
COPY nanosd_nas nanosd_nas
RUN pip install . && useradd --create-home --uid 1000 nas && mkdir -p /data/home \
    && chown nas /data/home
USER nas
EXPOSE 8000
CMD ["nanosd-nas", "--help"]
