# One image per stage, plus the Prefect server/worker image and PostgreSQL, from one file.
#
#   target             image holds
#   collect            Prefect, pandas/pyarrow, Great Expectations, source connectors
#   process            Prefect, pandas/pyarrow, the OpenAI / Anthropic / Groq SDKs, enrichers
#   review             Prefect, pandas/pyarrow (the decision form is a RunInput)
#   export             Prefect, pandas/pyarrow, sink connectors
#   augment-pipeline   every stage's packages (the parent can run stages as subflows)
#   prefect            Prefect server and Docker worker (prefect-docker), no project code
#
# PostgreSQL for the server is infrastructure, not the project: deployments/docker/postgres.Dockerfile.
#
# Built without a registry: scripts/docker-base.sh makes a local Debian base and, from a
# host-built wheelhouse, one runtime image per package set (augment-it-runtime-NAME:local,
# run user and /opt/venv included). A stage image here is its runtime plus the code, so a code
# change rebuilds one small layer. Classic builder (DOCKER_BUILDKIT=0): it builds every stage
# above the target, and each instruction costs seconds, so stages are kept to a few lines.

ARG RUNTIME=augment-it-runtime
ARG RUNTIME_TAG=local

# --- Prefect server and Docker workers (first: building it builds nothing else) ------------
# Same image for both; compose picks the command. Workers reach the engine through the mounted
# socket (compose adds the socket's group); their health check is the worker's own webserver.
FROM ${RUNTIME}-prefect:${RUNTIME_TAG} AS prefect
EXPOSE 4200
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD ["python3", "/opt/augment-it/deployments/docker/healthcheck.py", "http://localhost:4200/api/health"]
CMD ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"]
COPY deployments/docker/healthcheck.py /opt/augment-it/deployments/docker/healthcheck.py

# --- the project's code, the same in every stage image (read-only for the run user) ---------
FROM scratch AS code
COPY augment_it/ /opt/augment-it/augment_it/
COPY tasks/ /opt/augment-it/tasks/
COPY flows/ /opt/augment-it/flows/
COPY blocks/ /opt/augment-it/blocks/
COPY examples/ /opt/augment-it/examples/
COPY deployments/docker/healthcheck.py /opt/augment-it/deployments/docker/healthcheck.py

# --- stage images: deployments run their flows from /opt/augment-it (the runtime's WORKDIR,
# prefect.yaml's pull step), which is on PYTHONPATH.
# The health check asks the Prefect API the flow run reports to: a container that cannot
# reach it cannot report its state either.
FROM ${RUNTIME}-collect:${RUNTIME_TAG} AS collect
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "/opt/augment-it/deployments/docker/healthcheck.py"]
COPY --from=code /opt/augment-it /opt/augment-it

FROM ${RUNTIME}-process:${RUNTIME_TAG} AS process
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "/opt/augment-it/deployments/docker/healthcheck.py"]
COPY --from=code /opt/augment-it /opt/augment-it

FROM ${RUNTIME}-base:${RUNTIME_TAG} AS review
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "/opt/augment-it/deployments/docker/healthcheck.py"]
COPY --from=code /opt/augment-it /opt/augment-it

FROM ${RUNTIME}-export:${RUNTIME_TAG} AS export
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "/opt/augment-it/deployments/docker/healthcheck.py"]
COPY --from=code /opt/augment-it /opt/augment-it

FROM ${RUNTIME}-pipeline:${RUNTIME_TAG} AS augment-pipeline
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "/opt/augment-it/deployments/docker/healthcheck.py"]
COPY --from=code /opt/augment-it /opt/augment-it
