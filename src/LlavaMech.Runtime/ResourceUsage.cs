using System.Globalization;

namespace LlavaMech.Runtime;

/// <summary>Resident memory of a process, from /proc (native TorchSharp memory included, unlike GC counters).</summary>
public static class ResourceUsage
{
    /// <summary>VmRSS of this process (the working set where /proc is unreadable).</summary>
    public static long ResidentBytes() => SelfOrWorkingSet("VmRSS:");

    /// <summary>VmHWM (peak VmRSS) of this process (the working set where /proc is unreadable).</summary>
    public static long PeakResidentBytes() => SelfOrWorkingSet("VmHWM:");

    /// <summary>A /proc/PID/status field (e.g. "VmRSS:") in bytes; 0 when unreadable.</summary>
    public static long StatusBytes(int pid, string key) => ReadKb($"/proc/{pid}/status", key) is { } kb ? kb * 1024 : 0;

    public static string Mib(long bytes) => $"{bytes / (1024.0 * 1024.0):0.0} MiB";

    private static long SelfOrWorkingSet(string key) => (ReadKb("/proc/self/status", key) ?? Environment.WorkingSet / 1024) * 1024;

    private static long? ReadKb(string path, string key)
    {
        try
        {
            foreach (var line in File.ReadLines(path))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (IOException) { }
        return null;
    }
}
