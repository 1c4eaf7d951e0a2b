namespace LlavaMech.Cli.Commands;

/// <summary>The options every model-running command shares.</summary>
public static class DeviceOptions
{
    /// <summary>The weights' dtype; also of run, submit and the pipeline benchmark.</summary>
    public static readonly CommandLine.OptionSpec DType = new("dtype", "TYPE", "auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16", "auto");

    /// <summary>libtorch from an installed PyTorch; every command that loads libtorch declares it.</summary>
    public static readonly CommandLine.OptionSpec LibTorch = new("libtorch", "DIR",
        $"load libtorch from a PyTorch install's torch/lib folder (CUDA without TorchSharp-cuda-linux); also ${TorchRuntime.LibTorchEnvironmentVariable}");

    public static readonly CommandLine.OptionSpec[] Specs = [new("device", "DEV", "cpu, cuda, cuda:N or auto", "cpu"), DType, LibTorch];

    /// <summary>Loads an external libtorch if asked (before any other TorchSharp call), then returns load options.</summary>
    public static ModelLoadOptions Apply(CommandLine cl)
    {
        TorchRuntime.UseLibTorchFrom(cl.Get("libtorch"));
        return new ModelLoadOptions(cl.Get("device")!, cl.Get("dtype")!);
    }
}
