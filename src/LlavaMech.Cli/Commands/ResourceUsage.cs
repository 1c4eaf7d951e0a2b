namespace LlavaMech.Cli.Commands;

/// <summary>Resident memory of this process, from /proc (native TorchSharp memory included, unlike GC counters).</summary>
public static class ResourceUsage
{
    public static long ResidentBytes() => ReadKb("VmRSS:") * 1024;
    public static long PeakResidentBytes() => ReadKb("VmHWM:") * 1024;

    private static long ReadKb(string key)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return long.Parse(line[key.Length..].Trim().Split(' ')[0]);
        }
        catch (IOException) { }
        return Environment.WorkingSet / 1024;
    }

    public static string Mib(long bytes) => $"{bytes / (1024.0 * 1024.0):0.0} MiB";
}
