namespace LlavaMech.Datasets.Manifest;

/// <summary>
/// One accepted manifest line. <paramref name="ImagePath"/> is absolute (resolved against the
/// manifest's folder), <paramref name="ImageRelative"/> is the path as written in the manifest;
/// both are null for tqa. <paramref name="ObjectBox"/> is [x0, y0, x1, y1] in pixels of the
/// original image. <paramref name="MetadataJson"/> is a JSON object holding every field the
/// reader does not know, in file order ("{}" when there are none). <paramref name="Line"/> is
/// the 1-based line number in the manifest.
/// </summary>
public sealed record ManifestExample(
    string Id,
    string Task,
    string? ImagePath,
    string? ImageRelative,
    string Prompt,
    string? Expected,
    double[]? ObjectBox,
    string MetadataJson,
    int Line)
{
    public bool IsVqa => Task == ManifestTasks.Vqa;

    /// <summary>The manifest line as read (set by <see cref="ManifestReader"/>; empty for examples made in code).</summary>
    public string RawLine { get; init; } = "";
}

/// <summary>A manifest line that was not accepted; <see cref="Message"/> is "line N: reason".</summary>
/// <paramref name="RawLine"/> is the line as read, or only its start where the line was over the length limit.
public sealed record ManifestReject(int Line, string Reason, string RawLine)
{
    /// <summary>Length of the whole line in bytes (UTF-8, without the newline).</summary>
    public long RawBytes { get; init; }

    /// <summary>SHA-256 (hex) of the whole line's bytes.</summary>
    public string RawSha256 { get; init; } = "";

    public string Message => $"line {Line}: {Reason}";

    public override string ToString() => Message;
}

public sealed record ManifestReadResult(
    string ManifestPath,
    IReadOnlyList<ManifestExample> Examples,
    IReadOnlyList<ManifestReject> Rejects)
{
    public bool IsClean => Rejects.Count == 0;

    /// <summary>SHA-256 (hex) of the manifest file's bytes, computed while reading it.</summary>
    public string Sha256 { get; init; } = "";
}

public static class ManifestTasks
{
    /// <summary>Visual question answering: one image, the prompt holds exactly one &lt;image&gt;.</summary>
    public const string Vqa = "vqa";

    /// <summary>Textual question answering: no image, no &lt;image&gt; in the prompt.</summary>
    public const string Tqa = "tqa";

    public const string ImageToken = "<image>";
}

/// <summary>Names of the fields the reader interprets; every other field is metadata.</summary>
public static class ManifestFields
{
    public const string Id = "id";
    public const string Task = "task";
    public const string Image = "image";
    public const string Prompt = "prompt";
    public const string Expected = "expected";
    public const string ObjectBox = "object_box";

    public static readonly IReadOnlySet<string> Known =
        new HashSet<string>(StringComparer.Ordinal) { Id, Task, Image, Prompt, Expected, ObjectBox };
}
