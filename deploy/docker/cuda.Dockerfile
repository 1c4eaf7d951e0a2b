# syntax=docker/dockerfile:1
#
# LlavaMech on NVIDIA GPUs: the pipeline's CUDA worker silos (and the same CLI). TorchSharp without a bundled libtorch
# (-p:TorchBackend=external) runs on the CUDA libtorch of PyTorch's official torch 2.10.0+cu128 wheel, the release
# TorchSharp 0.107 is built against (libtorch 2.10, CUDA 12.8); LLAVAMECH_LIBTORCH points the CLI at it. Why not
# TorchSharp-cuda-linux: see deploy/README.md ("Which CUDA route").
#
#   docker build -f deploy/docker/cuda.Dockerfile -t llavamech:cuda .       (context: the repository root)
#   docker run --rm --gpus all --read-only --tmpfs /tmp -v /srv/models:/models:ro llavamech:cuda forward --device cuda ...
#
# The wheel carries the CUDA 12.8 user-space libraries (cudart, cuBLAS, cuDNN, NCCL, ...) in nvidia/*/lib, found
# through libtorch's RPATH; the node supplies only the driver (libcuda, libnvidia-ml), which the NVIDIA container
# toolkit mounts. CUDA 12.8 needs driver >= 570 (or the CUDA forward-compatibility package); Hopper (H100/H200) and
# Ampere are both covered by the cu128 build. Same runtime contract as cpu.Dockerfile: UID 1654, read-only root,
# writable /tmp and /var/cache/llavamech, weights mounted read only, no credentials in the image.

# ---------------------------------------------------------------------------------------------------- build
FROM mcr.microsoft.com/dotnet/sdk:10.0.401-noble AS build
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 \
    DOTNET_NOLOGO=1 \
    DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
WORKDIR /src
COPY global.json Directory.Build.props Directory.Build.targets ./
COPY src/ src/
RUN --mount=type=cache,id=llavamech-nuget,target=/root/.nuget/packages \
    dotnet publish src/LlavaMech.Cli/LlavaMech.Cli.csproj -c Release -r linux-x64 --self-contained true \
        -p:TorchBackend=external -p:DebugType=none -p:DebugSymbols=false -o /out \
 && test -x /out/llavamech \
 && test -f /out/libLibTorchSharp.so \
 && test ! -e /out/libtorch_cpu.so

# ---------------------------------------------------------------------------------------------------- libtorch (CUDA)
# Only to fetch and check the wheel: nothing of Python reaches the runtime image.
FROM python:3.12.12-slim-bookworm AS torch
ARG TORCH_VERSION=2.10.0
ARG TORCH_CUDA=cu128
RUN pip install --no-cache-dir --disable-pip-version-check --target /opt/torch \
        --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" "torch==${TORCH_VERSION}" \
 && PYTHONPATH=/opt/torch python -c "import torch, sys; v = torch.__version__; c = torch.version.cuda; print('torch', v, 'cuda', c); sys.exit(0 if v.startswith('${TORCH_VERSION}') and c else 1)" \
 && cd /opt/torch \
 && find . -mindepth 1 -maxdepth 1 ! -name torch ! -name nvidia -exec rm -rf {} + \
 && find torch -mindepth 1 -maxdepth 1 ! -name lib -exec rm -rf {} + \
 && find nvidia -name '*.h' -delete \
 && test -f torch/lib/libtorch_cuda.so \
 && test -f torch/lib/libc10_cuda.so

# ---------------------------------------------------------------------------------------------------- runtime
FROM mcr.microsoft.com/dotnet/runtime-deps:10.0.12-noble AS runtime
LABEL org.opencontainers.image.title="llavamech-cuda" \
      org.opencontainers.image.description="LlavaMech pipeline: CUDA worker silos and the llavamech CLI (TorchSharp on torch 2.10.0+cu128's libtorch)"
RUN grep -q GLIBCXX_3.4.32 /usr/lib/x86_64-linux-gnu/libstdc++.so.6 \
 && mkdir -p /var/cache/llavamech \
 && chown 1654:1654 /var/cache/llavamech
COPY --from=torch /opt/torch /opt/torch
COPY --from=build /out /opt/llavamech
# NVIDIA_*: what the container toolkit mounts (compute: libcuda; utility: NVML, for the GPU memory gauges).
# CUDA_DEVICE_ORDER=PCI_BUS_ID: cuda:N is NVML's device N. CUDA_CACHE_PATH: the JIT cache on the writable cache volume.
ENV PATH="/opt/llavamech:${PATH}" \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/var/cache/llavamech \
    LLAVAMECH_LIBTORCH=/opt/torch/torch/lib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_DEVICE_ORDER=PCI_BUS_ID \
    CUDA_CACHE_PATH=/var/cache/llavamech/cuda
WORKDIR /tmp
USER 1654:1654
EXPOSE 8080 11111 30000
# Kubernetes probes /healthz and /readyz (k8s/); the image has no HTTP client and also runs one-shot commands.
HEALTHCHECK NONE
ENTRYPOINT ["llavamech"]
CMD ["--help"]
