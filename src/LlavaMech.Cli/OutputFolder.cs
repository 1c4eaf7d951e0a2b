namespace LlavaMech.Cli.Commands;

/// <summary>Output folders that appear whole or not at all.</summary>
public static class OutputFolder
{
    /// <summary>
    /// Runs <paramref name="write"/> on a fresh temporary sibling of <paramref name="outDir"/> (same parent, so the
    /// rename stays on one file system), then renames it onto <paramref name="outDir"/>. An existing
    /// <paramref name="outDir"/> is moved aside only once <paramref name="write"/> succeeded, and removed after the
    /// rename; if <paramref name="write"/> throws, the temporary folder is removed and <paramref name="outDir"/> is left
    /// as it was (absent, or its earlier content).
    /// </summary>
    public static void WriteAtomically(string outDir, Action<string> write)
    {
        string target = Path.GetFullPath(outDir).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(target) ?? throw new ArgumentException($"--out '{outDir}' has no parent folder");
        if (File.Exists(target)) throw new IOException($"--out '{outDir}' is a file, not a folder");
        Directory.CreateDirectory(parent);
        string name = Path.GetFileName(target);
        string suffix = $"{Environment.ProcessId}-{Guid.NewGuid():N}"[..16];
        string temp = Path.Combine(parent, $".{name}.tmp-{suffix}");
        Directory.CreateDirectory(temp);
        try
        {
            write(temp);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        string? old = null;
        if (Directory.Exists(target))
        {
            old = Path.Combine(parent, $".{name}.old-{suffix}");
            Directory.Move(target, old);
        }
        try
        {
            Directory.Move(temp, target);
        }
        catch
        {
            if (old is not null) Directory.Move(old, target);   // put the earlier output back
            TryDelete(temp);
            throw;
        }
        if (old is not null) TryDelete(old);
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
