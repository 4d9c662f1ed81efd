# webgpu-llm-server: an OpenAI-compatible LLM server whose kernels are WGSL compute shaders run by
# Dawn on Vulkan. See docs/deployment.md.
#   docker build -t webgpu-llm-server .
#   docker run --rm --gpus all -p 23333:23333 -v /path/to/model:/models/model:ro webgpu-llm-server
# On NVIDIA GPUs the NVIDIA container toolkit mounts the driver's Vulkan ICD into the container (that
# needs the `graphics` capability below); with no GPU, Mesa lavapipe (software Vulkan, slow) is the fallback.

# The Node major of both stages, in this one place (CI tests the same major: NODE_LTS in .ci/run).
ARG NODE_VERSION=24

# --- build: compile TypeScript, then keep only the runtime dependencies ---
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# The chat page: `npm run build` ends with scripts/build-web.mjs, which bundles web/ into dist/web/.
COPY web ./web
COPY scripts/build-web.mjs ./scripts/
# webgpu ships Dawn for every platform; keep only this one's (saves ~110 MB).
RUN npm run build && npm prune --omit=dev --no-audit --no-fund \
    && find node_modules/webgpu/dist -mindepth 1 -maxdepth 1 ! -name "linux-$(node -p process.arch)" -exec rm -rf {} +

# --- runtime ---
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# The Vulkan loader (libvulkan1) and Mesa lavapipe from bookworm-backports, exactly as on a CPU-only
# development machine (bookworm's own Mesa 22 is too old for Dawn).
COPY scripts/install-software-gpu.sh /tmp/install-software-gpu.sh
RUN bash /tmp/install-software-gpu.sh \
    && rm -rf /var/lib/apt/lists/* /tmp/install-software-gpu.sh \
    && install -d -o node -g node /models
ENV NODE_ENV=production \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    XDG_RUNTIME_DIR=/tmp
WORKDIR /app
# Owned by root and read-only to the server's user.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY shaders ./shaders
# The base image's unprivileged user (uid 1000); its HF cache is /home/node/.cache/huggingface.
USER node
EXPOSE 23333
# Models load slowly: failures in the first 10 minutes do not count.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:23333/health', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve", "/models/model", "--server-name", "0.0.0.0"]
