namespace LlavaMech.Reports.Tests;

/// <summary><see cref="OutputFolder.WriteAtomically"/>: the folder gets every file of a write that succeeded, and nothing of one that failed.</summary>
public class OutputFolderTests
{
    [Fact]
    public void A_missing_folder_appears_with_every_file_written()
    {
        using var tmp = new TempDir();
        string outDir = tmp.File("report");
        OutputFolder.WriteAtomically(outDir, dir =>
        {
            Assert.False(Directory.Exists(outDir));   // nothing visible while writing
            File.WriteAllText(Path.Combine(dir, "a.json"), "{}");
            File.WriteAllText(Path.Combine(dir, "b.png"), "png");
        });
        Assert.Equal(["a.json", "b.png"], Directory.GetFiles(outDir).Select(f => Path.GetFileName(f)!).Order().ToArray());
        Assert.Single(Directory.GetFileSystemEntries(tmp.Path));   // no temporary folder left
    }

    [Fact]
    public void Into_an_existing_folder_files_are_replaced_and_the_users_other_files_kept()
    {
        using var tmp = new TempDir();
        string outDir = tmp.File("report");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "a.json"), "old");
        File.WriteAllText(Path.Combine(outDir, "notes.txt"), "mine");
        OutputFolder.WriteAtomically(outDir, dir => File.WriteAllText(Path.Combine(dir, "a.json"), "new"));
        Assert.Equal("new", File.ReadAllText(Path.Combine(outDir, "a.json")));
        Assert.Equal("mine", File.ReadAllText(Path.Combine(outDir, "notes.txt")));
    }

    [Fact]
    public void A_failed_write_leaves_the_folder_as_it_was_and_no_temporary_folder()
    {
        using var tmp = new TempDir();
        string outDir = tmp.File("report");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "a.json"), "old");
        var e = Assert.Throws<InvalidDataException>(() => OutputFolder.WriteAtomically(outDir, dir =>
        {
            File.WriteAllText(Path.Combine(dir, "a.json"), "half");
            throw new InvalidDataException("figure failed");
        }));
        Assert.Equal("figure failed", e.Message);
        Assert.Equal("old", File.ReadAllText(Path.Combine(outDir, "a.json")));
        Assert.Equal([outDir], Directory.GetFileSystemEntries(tmp.Path));
    }

    [Fact]
    public void A_file_in_the_way_is_named()
    {
        using var tmp = new TempDir();
        string path = tmp.File("report");
        File.WriteAllText(path, "x");
        var e = Assert.Throws<IOException>(() => OutputFolder.WriteAtomically(path, _ => { }));
        Assert.Contains(path, e.Message);
        Assert.Contains("is a file", e.Message);
    }
}
