# montage:0.1.0, the image that cluster/kuberay/rayservice.yaml and cluster/ray-up.yaml run:
#   docker build -t montage:0.1.0 .
# On Ray's own GPU image of the pinned Ray version (CUDA, Python 3.11). Its torch, if the image carries one, is kept:
# the project asks for torch>=2.11 and installs a CUDA build from PyPI only where none is present. Not built in this
# repository's CI (no container registry is reachable there).
FROM rayproject/ray:2.60.0-py311-gpu
WORKDIR /home/ray/montage
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users config config
COPY --chown=ray:users models models
COPY --chown=ray:users deployments deployments
COPY --chown=ray:users composition composition
COPY --chown=ray:users cluster cluster
COPY --chown=ray:users bench bench
RUN python -c "import torch" 2>/dev/null || pip install --no-cache-dir "torch>=2.11"; \
    pip install --no-cache-dir ".[server]" && python -c "import torch, diffusers, ray; print(torch.__version__, ray.__version__)"
ENV RAY_USAGE_STATS_ENABLED=0
