# usage-service container image.
#   docker build -t usage-service .
#   docker run --rm -p 50051:50051 -p 9090:9090 usage-service serve --demo
# Stage 1 builds the wheel (the generated stubs are committed: no protoc here); stage 2 installs it
# into a slim Python with a non-root user. The entry point is the same `usage-service` CLI the tests
# run (tests/ecosystem/test_deploy.py starts this ENTRYPOINT + CMD and runs the HEALTHCHECK command).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY generated ./generated
COPY server ./server
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /home/usage usage \
    && mkdir -p /var/lib/usage-service && chown usage /var/lib/usage-service
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /var/lib/usage-service
ENV PYTHONUNBUFFERED=1
ENV USAGE_HOST=0.0.0.0
ENV USAGE_PORT=50051
ENV USAGE_METRICS_PORT=9090
ENV USAGE_DATA_DIR=/var/lib/usage-service
ENV USAGE_LOG_FORMAT=json
EXPOSE 50051 9090
# grpc.health.v1 Check on 127.0.0.1:$USAGE_PORT; exit 0 only when SERVING (NOT_SERVING while draining).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["usage-service", "health"]
ENTRYPOINT ["usage-service"]
CMD ["serve"]
