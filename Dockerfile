# The bot's container image: one `python3 app.py` per container (WORKERS processes inside it;
# see docs/deployment.md, section 5). Build: docker build -t runtime-connections .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app
COPY . .

# The production install (docs/deployment.md): without the `local` extra, so no embedded
# store; MONGODB_URI is required. A numeric, non-root user (Kubernetes' runAsNonRoot can check it).
RUN python3 -m pip install --no-cache-dir -e . \
    && groupadd --system --gid 10001 bot \
    && useradd --system --uid 10001 --gid bot --create-home --home-dir /home/bot bot

USER 10001:10001

# HOST=0.0.0.0 is accepted only with an app id (MicrosoftAppId): production sets one.
ENV HOST=0.0.0.0 \
    PORT=3978 \
    DATA_DIR=/home/bot/data

EXPOSE 3978

# The process is up (slim has no curl): GET /healthz on this container's PORT.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3978') + '/healthz', timeout=4)"]

# The main process (PID 1) gets SIGTERM on `docker stop` and stops gracefully: allow it 35 s.
CMD ["python3", "app.py"]
