# The pipeline's services (detector, trainer, scorer) and the `retrain` CLI, in one image.
# The command picks the service: `docker run <image> detector`, `... topics create`, `... --help`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

COPY pyproject.toml README.md ./
COPY retrain/ retrain/
COPY schemas/ schemas/
COPY consumers/ consumers/
COPY producers/ producers/

# Installed into site-packages; the in-tree build leftovers are removed so /src holds only the sources.
RUN pip install --no-cache-dir '.[mlflow]' \
    && rm -rf build ./*.egg-info

# A fixed, unprivileged uid. The registries' and the detector's state directories exist in the image, owned by that
# user, so named volumes mounted there (docker-compose.yml: `mlflow-data`, `detector-state`) start out writable.
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin retrain \
    && mkdir -p /var/lib/retrain/models /var/lib/retrain/state /var/lib/retrain/mlflow \
    && chown -R retrain:retrain /var/lib/retrain

USER retrain
WORKDIR /home/retrain

ENTRYPOINT ["retrain"]
CMD ["--help"]
