# The project image: the API/dashboard, the study worker, the migration and the Ray nodes all
# run it, so that every Ray node has the same Python, Ray and PyTorch.
FROM python:3.11-slim

# PyTorch's CPU build by default; a GPU image passes the CUDA index of its driver, e.g.
#   docker compose build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NANOSD_NAS_HOME=/data/home

# The services run as nas, which owns its working folder (./nanosd-nas.db, Ray's and the
# exports' files) and the project home.
RUN useradd --create-home --uid 1000 nas && mkdir -p /app /data/home \
    && chown nas:nas /app /data/home
WORKDIR /app

# The dependency layers: PyTorch, then the project's dependencies read from pyproject.toml
# alone, so that a change of the source reinstalls nothing but the project.
RUN pip install "torch==2.13.0" --index-url "${TORCH_INDEX}"
COPY pyproject.toml ./
RUN python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; open('/tmp/requirements.txt', 'w').write('\n'.join(project['dependencies']))" \
    && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY README.md ./
COPY spaces spaces
COPY latency_models latency_models
COPY search search
COPY dashboards dashboards
COPY nanosd_nas nanosd_nas
RUN pip install --no-deps . && rm -rf build nanosd_nas.egg-info
USER nas
EXPOSE 8000
CMD ["nanosd-nas", "--help"]
