# PostgreSQL 15 for the Prefect server (docker-compose.yml's `db`), from Debian's package on the
# local base image (scripts/docker-base.sh): apt works inside `docker build` here, PyPI does not.
# Its own file so it builds beside the project's images, not after them.
ARG BASE_IMAGE=augment-it-base:bookworm-py311
FROM ${BASE_IMAGE}
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
