# One image per stage, plus the Prefect server/worker image and PostgreSQL, from one file.
#
#   target             image holds
#   collect            Prefect, pandas/pyarrow, Great Expectations, source connectors
#   process            Prefect, pandas/pyarrow, the OpenAI / Anthropic / Groq SDKs, enrichers
#   review             Prefect, pandas/pyarrow (the decision form is a RunInput)
#   export             Prefect, pandas/pyarrow, sink connectors
#   augment-pipeline   every stage's packages (the parent can run stages as subflows)
#   prefect            Prefect server and Docker worker (prefect-docker), no project code
#   postgres           PostgreSQL 15 for the Prefect server
#
# Built without a registry: the base is a local `docker import` of a debootstrapped bookworm
# and Python packages come from a wheelhouse in build/wheels (scripts/docker-base.sh makes
# both). Classic builder (DOCKER_BUILDKIT=0): it builds every stage above the target, so the
# shared virtualenv stages come first, the server/worker image needs no project code, and
# PostgreSQL (apt, slow) comes last.

ARG BASE_IMAGE=augment-it-base:bookworm-py311

FROM ${BASE_IMAGE} AS base
ENV LANG=C.UTF-8 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    GX_ANALYTICS_ENABLED=False
# Stage data lives on a volume mounted at /data in every container; owned by the run user so
# a fresh named volume takes that ownership on first mount.
RUN useradd --uid 1000 --create-home --shell /bin/sh augment \
 && mkdir -p /data \
 && chown augment:augment /data

# --- virtualenvs, each built on the smaller one it extends ---------------------------------
FROM base AS venv-base
COPY build/wheels/ /wheels/
COPY constraints.txt build/requirements/*.txt /requirements/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --no-cache-dir --no-index --find-links=/wheels \
      -c /requirements/constraints.txt -r /requirements/base.txt

FROM venv-base AS venv-export
RUN pip install --quiet --no-cache-dir --no-index --find-links=/wheels \
      -c /requirements/constraints.txt -r /requirements/export.txt

FROM venv-export AS venv-collect
RUN pip install --quiet --no-cache-dir --no-index --find-links=/wheels \
      -c /requirements/constraints.txt -r /requirements/collect.txt

FROM venv-base AS venv-process
RUN pip install --quiet --no-cache-dir --no-index --find-links=/wheels \
      -c /requirements/constraints.txt -r /requirements/process.txt

FROM venv-collect AS venv-pipeline
RUN pip install --quiet --no-cache-dir --no-index --find-links=/wheels \
      -c /requirements/constraints.txt -r /requirements/pipeline.txt

FROM base AS venv-prefect
COPY build/wheels/ /wheels/
COPY constraints.txt build/requirements/prefect.txt /requirements/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --no-cache-dir --no-index --find-links=/wheels \
      -c /requirements/constraints.txt -r /requirements/prefect.txt

# --- Prefect server and Docker workers --------------------------------------------------------
# Same image for both; compose picks the command. Workers reach the engine through the mounted
# socket (compose adds the socket's group); their health check is the worker's own webserver.
FROM base AS prefect
USER augment
WORKDIR /home/augment
EXPOSE 4200
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD ["python3", "/opt/augment-it/deployments/docker/healthcheck.py", "http://localhost:4200/api/health"]
CMD ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"]
COPY --from=venv-prefect /opt/venv /opt/venv
COPY deployments/docker/healthcheck.py /opt/augment-it/deployments/docker/healthcheck.py

# --- the project's code, the same in every stage image (read-only for the run user) ---------
FROM base AS code
COPY augment_it/ /opt/augment-it/augment_it/
COPY tasks/ /opt/augment-it/tasks/
COPY flows/ /opt/augment-it/flows/
COPY blocks/ /opt/augment-it/blocks/
COPY examples/ /opt/augment-it/examples/
COPY deployments/docker/healthcheck.py /opt/augment-it/deployments/docker/healthcheck.py

# --- stage images: deployments run their flows from WORKDIR (prefect.yaml's pull step) ------
# What they share comes first so a code change rebuilds only the last layer of each. The
# health check asks the Prefect API the flow run reports to: a container that cannot reach it
# cannot report its state either.
FROM base AS runtime
ENV PYTHONPATH=/opt/augment-it
WORKDIR /opt/augment-it
USER augment
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "/opt/augment-it/deployments/docker/healthcheck.py"]

FROM runtime AS collect
LABEL io.augment-it.stage=collect
COPY --from=venv-collect /opt/venv /opt/venv
COPY --from=code /opt/augment-it /opt/augment-it

FROM runtime AS process
LABEL io.augment-it.stage=process
COPY --from=venv-process /opt/venv /opt/venv
COPY --from=code /opt/augment-it /opt/augment-it

FROM runtime AS review
LABEL io.augment-it.stage=review
COPY --from=venv-base /opt/venv /opt/venv
COPY --from=code /opt/augment-it /opt/augment-it

FROM runtime AS export
LABEL io.augment-it.stage=export
COPY --from=venv-export /opt/venv /opt/venv
COPY --from=code /opt/augment-it /opt/augment-it

FROM runtime AS augment-pipeline
LABEL io.augment-it.stage=augment-pipeline
COPY --from=venv-pipeline /opt/venv /opt/venv
COPY --from=code /opt/augment-it /opt/augment-it

# --- PostgreSQL (Debian's package; apt works inside `docker build` here, PyPI does not) ------
FROM base AS postgres
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data \
 && chown postgres:postgres /var/lib/postgresql/data \
 && chmod 700 /var/lib/postgresql/data
COPY deployments/docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=10 \
  CMD ["pg_isready", "-h", "127.0.0.1", "-p", "5432"]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
