# pg-walsender container image.
#   docker build -t pg-walsender .
#   docker run -p 5433:5433 -p 9433:9433 -v pgws-data:/var/lib/pg-walsender pg-walsender
# Configuration is by environment (PGWS_*; see README "Settings"): e.g.
#   -e PGWS_SOURCE=archive -e PGWS_ARCHIVE_DIR=/archive -v /srv/wal-archive:/archive:ro
# Node >= 24.20 is required (it hands TCP sockets to worker threads); the TypeScript
# sources run as they are (Node strips the types). The one build step is the small
# native walmap module (native/walmap.c), compiled in the full node:24 image, which
# has gcc and Node's headers; the slim runtime image only gets the .node file.
ARG NODE_IMAGE=node:24-slim
ARG NODE_BUILD_IMAGE=node:24

# Stage 1: production dependencies only, from the lock file.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# Stage 2: the native module (N-API: ABI-stable across Node versions).
FROM ${NODE_BUILD_IMAGE} AS native
WORKDIR /app
COPY scripts/build-native.sh ./scripts/
COPY native ./native
RUN bash scripts/build-native.sh --required

# Stage 3: the runtime image.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    PGWS_LISTEN=0.0.0.0:5433 \
    PGWS_ADMIN_LISTEN=0.0.0.0:9433 \
    PGWS_DATA_DIR=/var/lib/pg-walsender
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY workers ./workers
COPY --from=native /app/build/walmap.node ./build/walmap.node
RUN mkdir -p /var/lib/pg-walsender && chown node:node /var/lib/pg-walsender
# The official image's unprivileged user (uid 1000).
USER node
VOLUME ["/var/lib/pg-walsender"]
# 5433: replication protocol; 9433: admin API and /metrics.
EXPOSE 5433 9433
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["node", "src/admin/healthcheck.ts"]
# SIGTERM drains: every streaming standby gets all WAL, then the process exits 0.
STOPSIGNAL SIGTERM
CMD ["node", "src/main.ts"]
