using System.Runtime.InteropServices;

namespace LlavaMech.Telemetry;

/// <summary>
/// GPU memory as the NVIDIA driver sees it, through NVML (<c>libnvidia-ml.so.1</c>, which the NVIDIA container toolkit
/// mounts into a GPU pod with the <c>utility</c> driver capability). TorchSharp 0.107 exposes no CUDA memory statistics,
/// so this is the source the silo can use without one: memory in use on the whole device (every process, CUDA context
/// included), which is what decides whether the next model or batch fits. Absent driver: <see cref="TryOpen"/> returns
/// null and nothing is reported. Device indices follow NVML's PCI order; the CUDA image sets
/// <c>CUDA_DEVICE_ORDER=PCI_BUS_ID</c> so that cuda:N is NVML's device N.
/// </summary>
public sealed unsafe class NvmlGpuMemory : IDisposable
{
    [StructLayout(LayoutKind.Sequential)]
    private struct NvmlMemory
    {
        public ulong Total;
        public ulong Free;
        public ulong Used;
    }

    private readonly nint _library;
    private readonly delegate* unmanaged<int> _shutdown;
    private readonly delegate* unmanaged<uint, nint*, int> _handleByIndex;
    private readonly delegate* unmanaged<nint, NvmlMemory*, int> _memoryInfo;
    private readonly nint[] _handles;
    private readonly Lock _gate = new();
    private int _disposed;

    private NvmlGpuMemory(nint library, delegate* unmanaged<int> shutdown, delegate* unmanaged<uint, nint*, int> handleByIndex,
        delegate* unmanaged<nint, NvmlMemory*, int> memoryInfo, int count)
    {
        _library = library;
        _shutdown = shutdown;
        _handleByIndex = handleByIndex;
        _memoryInfo = memoryInfo;
        _handles = new nint[count];
        for (int i = 0; i < count; i++)
        {
            nint h = 0;
            _handles[i] = _handleByIndex((uint)i, &h) == 0 ? h : 0;
        }
    }

    /// <summary>Devices NVML sees.</summary>
    public int DeviceCount => _handles.Length;

    /// <summary>Opens NVML; null (with the reason) where there is no NVIDIA driver or no device.</summary>
    public static NvmlGpuMemory? TryOpen(out string reason)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsWindows())
        {
            reason = "NVML exists on Linux and Windows only";
            return null;
        }
        string name = OperatingSystem.IsWindows() ? "nvml.dll" : "libnvidia-ml.so.1";
        if (!NativeLibrary.TryLoad(name, out nint lib))
        {
            reason = $"{name} not found (no NVIDIA driver in this container)";
            return null;
        }
        try
        {
            if (!NativeLibrary.TryGetExport(lib, "nvmlInit_v2", out nint init) ||
                !NativeLibrary.TryGetExport(lib, "nvmlShutdown", out nint shutdown) ||
                !NativeLibrary.TryGetExport(lib, "nvmlDeviceGetCount_v2", out nint count) ||
                !NativeLibrary.TryGetExport(lib, "nvmlDeviceGetHandleByIndex_v2", out nint byIndex) ||
                !NativeLibrary.TryGetExport(lib, "nvmlDeviceGetMemoryInfo", out nint memory))
            {
                NativeLibrary.Free(lib);
                reason = $"{name} lacks the NVML functions this reader needs";
                return null;
            }
            int rc = ((delegate* unmanaged<int>)init)();
            if (rc != 0)
            {
                NativeLibrary.Free(lib);
                reason = $"nvmlInit_v2 returned {rc}";
                return null;
            }
            uint n = 0;
            rc = ((delegate* unmanaged<uint*, int>)count)(&n);
            if (rc != 0 || n == 0)
            {
                ((delegate* unmanaged<int>)shutdown)();
                NativeLibrary.Free(lib);
                reason = rc != 0 ? $"nvmlDeviceGetCount_v2 returned {rc}" : "NVML sees no device";
                return null;
            }
            reason = $"NVML: {n} device(s)";
            return new NvmlGpuMemory(lib, (delegate* unmanaged<int>)shutdown, (delegate* unmanaged<uint, nint*, int>)byIndex,
                (delegate* unmanaged<nint, NvmlMemory*, int>)memory, (int)n);
        }
        catch (Exception e)
        {
            reason = $"NVML failed: {e.Message}";
            return null;
        }
    }

    /// <summary>Bytes in use and in total on device <paramref name="index"/>, or null when NVML cannot say.</summary>
    public (long Used, long Total)? Read(int index)
    {
        lock (_gate)
        {
            if (_disposed != 0 || (uint)index >= (uint)_handles.Length || _handles[index] == 0) return null;
            NvmlMemory m;
            if (_memoryInfo(_handles[index], &m) != 0) return null;
            return ((long)m.Used, (long)m.Total);
        }
    }

    /// <summary>
    /// Registers every NVML device with <paramref name="metrics"/> as device cuda:N, source nvml. Returns the
    /// registration (dispose it, then this reader), or null where NVML is not available.
    /// </summary>
    public static IDisposable? ObserveAll(PipelineMetrics metrics, out string reason)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        var nvml = TryOpen(out reason);
        if (nvml is null) return null;
        var registrations = new List<IDisposable>();
        for (int i = 0; i < nvml.DeviceCount; i++)
        {
            int index = i;
            registrations.Add(metrics.ObserveGpuMemory($"cuda:{index}", () => nvml.Read(index)?.Used, () => nvml.Read(index)?.Total, "nvml"));
        }
        registrations.Add(nvml);
        return new Group(registrations);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed != 0) return;
            _disposed = 1;
            try { _shutdown(); }
            finally { NativeLibrary.Free(_library); }
        }
    }

    private sealed class Group(List<IDisposable> items) : IDisposable
    {
        public void Dispose()
        {
            foreach (var d in items) d.Dispose();
        }
    }
}
