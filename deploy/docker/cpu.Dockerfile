# syntax=docker/dockerfile:1
#
# LlavaMech on CPU: the pipeline's CPU silos and the command-line tool (submit, status, cancel, run, reanalyze, diff,
# forward, explain ...), one image. Self-contained publish (no .NET runtime in the image), TorchSharp-cpu's bundled
# libtorch 2.10.
#
#   docker build -f deploy/docker/cpu.Dockerfile -t llavamech:cpu .          (context: the repository root)
#   docker run --rm --read-only --tmpfs /tmp -v "$PWD/tests/fixtures:/models:ro" llavamech:cpu forward --model /models/tiny-llava-mha ...
#
# Runtime contract (what k8s/ relies on): runs as UID/GID 1654 (the .NET images' "app" user), needs no write access
# to its root filesystem, only to /tmp and /var/cache/llavamech (volumes); model weights and datasets are mounted read
# only; no credentials in the image (Azure Storage connections come from the environment at run time).

# ---------------------------------------------------------------------------------------------------- build
# Base images are pinned to exact versions (the .NET 10 SDK and runtime patch our machines run); bump them together,
# or pin @sha256 digests of your registry's mirror.
FROM mcr.microsoft.com/dotnet/sdk:10.0.401-noble AS build
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 \
    DOTNET_NOLOGO=1 \
    DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
WORKDIR /src
# .dockerignore keeps the context to these (no tests, fixtures, bin/obj, node_modules or .git).
COPY global.json Directory.Build.props Directory.Build.targets ./
COPY src/ src/
RUN --mount=type=cache,id=llavamech-nuget,target=/root/.nuget/packages \
    dotnet publish src/LlavaMech.Cli/LlavaMech.Cli.csproj -c Release -r linux-x64 --self-contained true \
        -p:TorchBackend=cpu -p:DebugType=none -p:DebugSymbols=false -o /out \
 && test -x /out/llavamech \
 && test -f /out/libLibTorchSharp.so \
 && test -f /out/libtorch_cpu.so

# ---------------------------------------------------------------------------------------------------- runtime
# Ubuntu 24.04's libstdc++6 (GCC 14) has GLIBCXX_3.4.32, which TorchSharp's libLibTorchSharp.so needs (Debian 12's
# does not: that is why the host script pulls libstdc++ from trixie). The RUN below fails the build if it is missing.
FROM mcr.microsoft.com/dotnet/runtime-deps:10.0.12-noble AS runtime
LABEL org.opencontainers.image.title="llavamech" \
      org.opencontainers.image.description="LlavaMech pipeline: CPU silos and the llavamech CLI (TorchSharp, libtorch 2.10 CPU)"
RUN grep -q GLIBCXX_3.4.32 /usr/lib/x86_64-linux-gnu/libstdc++.so.6 \
 && mkdir -p /var/cache/llavamech \
 && chown 1654:1654 /var/cache/llavamech
# Owned by root and not writable by the app user: the program cannot change itself.
COPY --from=build /out /opt/llavamech
ENV PATH="/opt/llavamech:${PATH}" \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/var/cache/llavamech
WORKDIR /tmp
USER 1654:1654
# 8080: /healthz and /readyz (when LLAVAMECH_Telemetry__HealthPort=8080, as k8s/ sets it); 11111: silo-to-silo; 30000: gateway (clients: submit, status, cancel).
EXPOSE 8080 11111 30000
# Kubernetes probes /healthz and /readyz (k8s/); the image has no HTTP client and also runs one-shot commands.
HEALTHCHECK NONE
ENTRYPOINT ["llavamech"]
CMD ["--help"]
