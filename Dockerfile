# Small, non-root image: build a wheel, install it into a clean slim Python.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY service ./service
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# TOKENBROKER_CONFIG is the config file's path, not a secret (hadolint reads TOKEN as one)
# hadolint ignore=DL3064
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TOKENBROKER_CONFIG=/etc/tokenbroker/broker.yaml
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tokenbroker
COPY config/broker.yaml config/policies.yaml /etc/tokenbroker/
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["tokenbroker"]
CMD ["serve"]
