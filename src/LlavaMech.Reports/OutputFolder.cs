namespace LlavaMech.Reports;

/// <summary>Output folders that never hold a partial result.</summary>
public static class OutputFolder
{
    /// <summary>
    /// Runs <paramref name="write"/> on a fresh hidden temporary sibling of <paramref name="outDir"/> (same parent, so
    /// renames stay on one file system), and only once it succeeded puts the files in place: a missing
    /// <paramref name="outDir"/> is the temporary folder renamed; into an existing one each file is renamed over its
    /// namesake (other files there are left alone: an output folder may hold the user's other files). If
    /// <paramref name="write"/> throws, the temporary folder is removed and <paramref name="outDir"/> is not touched.
    /// </summary>
    public static void WriteAtomically(string outDir, Action<string> write)
    {
        string target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outDir));
        if (File.Exists(target)) throw new IOException($"output folder '{outDir}' is a file, not a folder");
        string parent = Path.GetDirectoryName(target) ?? throw new ArgumentException($"output folder '{outDir}' has no parent folder");
        Directory.CreateDirectory(parent);
        string temp = Path.Combine(parent, $".{Path.GetFileName(target)}.tmp-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}");
        Directory.CreateDirectory(temp);
        try
        {
            write(temp);
            if (!Directory.Exists(target))
            {
                Directory.Move(temp, target);
                return;
            }
            foreach (var file in Directory.GetFiles(temp))
                File.Move(file, Path.Combine(target, Path.GetFileName(file)), overwrite: true);
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                try { Directory.Delete(temp, recursive: true); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
        }
    }
}
