using System.Runtime.InteropServices;

namespace LlavaMech.Model.Devices;

/// <summary>
/// Device and dtype choice, and the second CUDA route: TorchSharp running on the libtorch of an
/// installed PyTorch (its <c>torch/lib</c> folder), for machines where TorchSharp-cuda-linux is not served.
/// </summary>
public static class TorchRuntime
{
    /// <summary>Environment variable naming a PyTorch <c>torch/lib</c> folder to load libtorch from.</summary>
    public const string LibTorchEnvironmentVariable = "LLAVAMECH_LIBTORCH";

    private static readonly object Gate = new();
    private static string? _loadedFrom;

    /// <summary>Where libtorch came from: a folder, or "bundled" (the TorchSharp package's own).</summary>
    public static string LibTorchSource => _loadedFrom ?? "bundled";

    /// <summary>
    /// Loads libtorch from <paramref name="dir"/> (or <c>LLAVAMECH_LIBTORCH</c> when null) before
    /// TorchSharp touches its native code. Must run before any other TorchSharp call; a no-op when
    /// neither is set.
    /// </summary>
    public static void UseLibTorchFrom(string? dir)
    {
        dir ??= Environment.GetEnvironmentVariable(LibTorchEnvironmentVariable);
        if (string.IsNullOrWhiteSpace(dir)) return;
        lock (Gate)
        {
            if (_loadedFrom == dir) return;
            if (_loadedFrom != null) throw new InvalidOperationException($"libtorch was already loaded from {_loadedFrom}; cannot switch to {dir}");
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"--libtorch / {LibTorchEnvironmentVariable}: folder '{dir}' does not exist (expected a PyTorch install's torch/lib)");

            // Order matters: each library resolves its dependencies among those already loaded.
            bool cuda = File.Exists(Path.Combine(dir, "libtorch_cuda.so"));
            string[] libs = cuda
                ? ["libc10.so", "libtorch_cpu.so", "libc10_cuda.so", "libtorch_cuda.so", "libtorch.so"]
                : ["libc10.so", "libtorch_cpu.so", "libtorch.so"];
            foreach (var lib in libs)
            {
                var path = Path.Combine(dir, lib);
                if (!File.Exists(path)) throw new FileNotFoundException($"--libtorch: '{path}' is missing; point it at a PyTorch install's torch/lib folder", path);
                NativeLibrary.Load(path);
            }
            NativeLibrary.Load(FindLibTorchSharp());
            if (cuda) InitializeDeviceType(DeviceType.CUDA);
            _loadedFrom = dir;
        }
    }

    private static string FindLibTorchSharp()
    {
        string[] candidates =
        [
            Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so"),
            Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"),
        ];
        return candidates.FirstOrDefault(File.Exists)
            ?? throw new FileNotFoundException($"libLibTorchSharp.so not found next to {AppContext.BaseDirectory}; build with -p:TorchBackend=external or cpu");
    }

    /// <summary>"cpu", "cuda", "cuda:N" or "auto" (CUDA when available).</summary>
    public static Device ResolveDevice(string spec)
    {
        spec = spec.Trim().ToLowerInvariant();
        if (spec == "auto") return cuda.is_available() ? CUDA : CPU;
        if (spec == "cpu") return CPU;
        if (spec == "cuda" || spec.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!cuda.is_available())
                throw new InvalidOperationException($"device '{spec}' requested but CUDA is not available to TorchSharp (libtorch: {LibTorchSource}). Build with -p:TorchBackend=cuda, or pass --libtorch <PyTorch torch/lib folder> / set {LibTorchEnvironmentVariable}.");
            return device(spec);
        }
        throw new ArgumentException($"unknown device '{spec}': use cpu, cuda, cuda:N or auto");
    }

    /// <summary>"auto" (float32 on CPU, bfloat16 on CUDA), "float32", "bfloat16", "float16".</summary>
    public static ScalarType ResolveDType(string spec, Device device) => spec.Trim().ToLowerInvariant() switch
    {
        "auto" => device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32,
        "float32" or "fp32" or "f32" => ScalarType.Float32,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        "float16" or "fp16" or "f16" or "half" => ScalarType.Float16,
        _ => throw new ArgumentException($"unknown dtype '{spec}': use auto, float32, bfloat16 or float16"),
    };
}
