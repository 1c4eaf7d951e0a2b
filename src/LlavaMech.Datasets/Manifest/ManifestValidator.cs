using System.Text;

namespace LlavaMech.Datasets.Manifest;

/// <summary>Backs `llavamech dataset validate MANIFEST`.</summary>
public static class ManifestValidator
{
    public const int ExitOk = 0;
    public const int ExitBadLines = 1;
    public const int ExitUnreadable = 2;

    /// <summary>
    /// Report: one "line N: reason" per rejected line, then a summary line. Exit code 0 when every
    /// line is good and there is at least one example, 1 when a line is bad or there are none,
    /// 2 when the manifest cannot be read.
    /// </summary>
    public static (string Report, int ExitCode) Validate(string manifestPath, ManifestLimits? limits = null)
    {
        ManifestReadResult result;
        try
        {
            result = ManifestReader.Read(manifestPath, limits);
        }
        catch (IOException e)
        {
            return ("error: " + e.Message + "\n", ExitUnreadable);
        }

        var sb = new StringBuilder();
        foreach (var r in result.Rejects)
            sb.Append(r.Message).Append('\n');

        int vqa = result.Examples.Count(e => e.Task == ManifestTasks.Vqa);
        int tqa = result.Examples.Count - vqa;
        int withExpected = result.Examples.Count(e => e.Expected != null);
        int withBox = result.Examples.Count(e => e.ObjectBox != null);
        sb.Append($"{manifestPath}: {result.Examples.Count} examples ok ({vqa} vqa, {tqa} tqa; "
                  + $"{withExpected} with expected, {withBox} with object_box), {result.Rejects.Count} rejected");
        bool empty = result.Examples.Count == 0 && result.Rejects.Count == 0;
        if (empty)
            sb.Append(" (the manifest has no examples)");
        sb.Append('\n');
        return (sb.ToString(), result.Rejects.Count > 0 || empty ? ExitBadLines : ExitOk);
    }
}
