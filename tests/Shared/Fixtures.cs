namespace LlavaMech.Testing;

/// <summary>Locates the checked-in fixtures (tests/fixtures), copied from the reference goldens.</summary>
public static class Fixtures
{
    public static string RepoRoot { get; } = FindRoot();

    public static string Dir => Path.Combine(RepoRoot, "tests", "fixtures");

    /// <summary>Folder of one fixture model, e.g. "tiny-llava-mha".</summary>
    public static string Model(string name) => Path.Combine(Dir, name);

    public static string File(string model, string file) => Path.Combine(Dir, model, file);

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !System.IO.File.Exists(Path.Combine(dir.FullName, "LlavaMechPipeline.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("LlavaMechPipeline.sln not found above " + AppContext.BaseDirectory);
    }
}
