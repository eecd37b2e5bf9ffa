# One image for every LLM Studio process: the studio (Streamlit), the API and the workers.
# docker-compose.yml picks the command per service.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STUDIO_DATA_DIR=/data \
    STUDIO_HOST=0.0.0.0 \
    TOKENIZERS_PARALLELISM=false \
    HF_HOME=/data/hf-cache

# Extra pip arguments, e.g. a local index or mirror: --build-arg PIP_ARGS="--index-url ..."
ARG PIP_ARGS=""

WORKDIR /app

# torch first, pinned, so that nothing later in the install can move it
RUN pip install ${PIP_ARGS} torch==2.13.0

COPY pyproject.toml README.md constraints.txt alembic.ini ./
COPY backend ./backend
COPY studio ./studio
COPY migrations ./migrations
COPY scripts ./scripts

RUN pip install ${PIP_ARGS} -c constraints.txt -e . \
    && python scripts/i18n.py compile

RUN useradd --create-home --uid 1000 studio \
    && mkdir -p /data \
    && chown -R studio:studio /data /app
USER studio

VOLUME ["/data"]
EXPOSE 8501 8000

# The studio service (docker-compose.yml overrides this for the API and the workers).
CMD ["studio", "up", "--no-worker", "--no-api"]
