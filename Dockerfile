# One image for every ttsgw deployable; docker-compose.yml picks the command.
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng libsndfile1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY control_plane control_plane
COPY gateway gateway
COPY tts_backends tts_backends
COPY admin_ui admin_ui
COPY ttsgw ttsgw
COPY ttsgw_common ttsgw_common
COPY ttsgw_contract ttsgw_contract
# The worker extra brings torch; for a CPU-only image add
# --extra-index-url https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir ".[worker]"
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["ttsgw"]
