using System.Text.Json;
using LlavaMech.Datasets.Manifest;
using SkiaSharp;

namespace LlavaMech.Datasets.Tests;

public sealed class ManifestReaderTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly string _dataDir;

    public ManifestReaderTests()
    {
        _dataDir = _tmp.File("data");
        Images.WritePng(Path.Combine(_dataDir, "images", "a.png"), 84, 84, SKColors.Red);
        Images.WritePng(_tmp.File("outside.png"), 84, 84, SKColors.Red); // exists, but outside the dataset folder
        File.WriteAllText(Path.Combine(_dataDir, "images", "notimage.png"), "this is not a png");
    }

    public void Dispose() => _tmp.Dispose();

    // Line numbers are 1-based; the comments give each line's number.
    private static readonly string[] MixedLines =
    [
        /* 1 */ """{"id":"a","task":"vqa","image":"images/a.png","prompt":"USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is","expected":"red","object_box":[1,2,30.5,40],"shape":"circle","extra":{"k":[1,2]}}""",
        /* 2 */ "",
        /* 3 */ """{"id":"t","task":"tqa","prompt":"USER: What is the color of the banana?\nASSISTANT: The color of the banana is","expected":"yellow"}""",
        /* 4 */ """{"id":"x","task":"tqa",""",
        /* 5 */ "[1, 2]",
        /* 6 */ """{"task":"tqa","prompt":"p"}""",
        /* 7 */ """{"id":"  ","task":"tqa","prompt":"p"}""",
        /* 8 */ """{"id":"a","task":"tqa","prompt":"p"}""",
        /* 9 */ """{"id":"b","task":"caption","prompt":"p"}""",
        /* 10 */ """{"id":"c","task":"vqa","prompt":"<image> p"}""",
        /* 11 */ """{"id":"d","task":"tqa","image":"images/a.png","prompt":"p"}""",
        /* 12 */ """{"id":"e","task":"vqa","image":"images/missing.png","prompt":"<image>"}""",
        /* 13 */ """{"id":"f","task":"vqa","image":"/etc/hostname","prompt":"<image>"}""",
        /* 14 */ """{"id":"g","task":"vqa","image":"../outside.png","prompt":"<image>"}""",
        /* 15 */ """{"id":"h","task":"vqa","image":"images/a.png"}""",
        /* 16 */ """{"id":"i","task":"vqa","image":"images/a.png","prompt":"no image token here"}""",
        /* 17 */ """{"id":"j","task":"vqa","image":"images/a.png","prompt":"<image><image> two"}""",
        /* 18 */ """{"id":"k","task":"tqa","prompt":"<image> what"}""",
        /* 19 */ """{"id":"l","task":"vqa","image":"images/a.png","prompt":"<image>","object_box":[1,2,3]}""",
        /* 20 */ """{"id":"m","task":"vqa","image":"images/a.png","prompt":"<image>","object_box":[30,2,10,40]}""",
        /* 21 */ """{"id":"n","task":"vqa","image":"images/a.png","prompt":"<image>","object_box":[0,0,90,40]}""",
        /* 22 */ """{"id":"o","task":"vqa","image":"images/../../outside.png","prompt":"<image>"}""",
        /* 23 */ """{"id":"p","task":"vqa","image":"images/notimage.png","prompt":"<image>"}""",
        /* 24 */ "   ",
        /* 25 */ """{"id":"q","task":"vqa","prompt":"x","object_box":[3,3,1,1]}""",
        /* 26 */ """{"id":"s","task":"vqa","image":"images/a.png","prompt":"<image>","object_box":["1",2,3,4]}""",
        /* 27 */ """{"id":"u","task":"tqa","prompt":"p","prompt":"again"}""",
        /* 28 */ """{"id":"v","task":"vqa","image":"./images/a.png","prompt":"<image>\nQ","object_box":[0,0,84,84]}""",
    ];

    private string WriteManifest(IEnumerable<string> lines, string newline = "\n")
    {
        string path = Path.Combine(_dataDir, "manifest.jsonl");
        File.WriteAllText(path, string.Join(newline, lines) + newline);
        return path;
    }

    [Fact]
    public void A_file_that_does_not_start_as_a_manifest_is_refused_whole_and_quotes_none_of_its_lines()
    {
        string passwd = WriteManifest(["root:x:0:0:root:/root:/bin/bash", "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
            "bin:x:2:2:bin:/bin:/usr/sbin/nologin", """{"id":"a","task":"tqa","prompt":"p"}"""]);
        var e = Assert.Throws<ManifestFormatException>(() => ManifestReader.Read(passwd));
        Assert.Contains(passwd, e.Message);
        Assert.Contains($"first {ManifestReader.NotAManifestLines} lines are not JSON objects (line 1: invalid JSON", e.Message);
        Assert.DoesNotContain("root:x", e.Message);
        Assert.DoesNotContain("/bin/bash", e.Message);

        // Short files too: every line not a JSON object.
        Assert.Throws<ManifestFormatException>(() => ManifestReader.Read(WriteManifest(["secret-token-value"])));
        // One bad line before JSON objects is an ordinary reject of a manifest.
        var ok = ManifestReader.Read(WriteManifest(["oops", """{"id":"a","task":"tqa","prompt":"p"}"""]));
        Assert.Equal(["a"], ok.Examples.Select(x => x.Id));
        Assert.Equal([1], ok.Rejects.Select(r => r.Line));
        // JSON objects that are bad examples are a manifest's rejects, not a refusal.
        var bad = ManifestReader.Read(WriteManifest(["""{"id":1}""", """{"task":"x"}""", """{"prompt":2}""", """{"id":"b"}"""]));
        Assert.Empty(bad.Examples);
        Assert.Equal(4, bad.Rejects.Count);
    }

    [Fact]
    public void Mixed_manifest_accepts_good_lines_and_rejects_each_bad_line_with_its_reason()
    {
        var result = ManifestReader.Read(WriteManifest(MixedLines));

        Assert.Equal(["a", "t", "v"], result.Examples.Select(e => e.Id));
        var reasons = result.Rejects.ToDictionary(r => r.Line, r => r.Reason);
        Assert.Equal([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 25, 26, 27], reasons.Keys.Order());

        Assert.StartsWith("invalid JSON: ", reasons[4]);
        Assert.Equal("not a JSON object (found an array)", reasons[5]);
        Assert.Equal("missing id", reasons[6]);
        Assert.Equal("empty id", reasons[7]);
        Assert.Equal("duplicate id 'a' (first used on line 1)", reasons[8]);
        Assert.Equal("unknown task 'caption' (expected vqa or tqa)", reasons[9]);
        Assert.Equal("vqa example without image", reasons[10]);
        Assert.Equal("tqa example with image (tqa has no image; use task vqa)", reasons[11]);
        Assert.Equal("image file not found: 'images/missing.png'", reasons[12]);
        Assert.Equal("image path '/etc/hostname' is absolute (must be relative to the manifest's folder, or lie under a folder named with --image-root)", reasons[13]);
        Assert.Equal("image path '../outside.png' escapes the dataset folder ('..')", reasons[14]);
        Assert.Equal("missing prompt", reasons[15]);
        Assert.Equal("vqa prompt has no <image> token (needs exactly one)", reasons[16]);
        Assert.Equal("vqa prompt has 2 <image> tokens (needs exactly one)", reasons[17]);
        Assert.Equal("tqa prompt contains <image> (tqa has no image)", reasons[18]);
        Assert.Equal("object_box must be 4 numbers [x0, y0, x1, y1], got [1,2,3]", reasons[19]);
        Assert.Equal("object_box [30, 2, 10, 40] is not ordered (needs x0 < x1 and y0 < y1)", reasons[20]);
        Assert.Equal("object_box [0, 0, 90, 40] lies outside the 84x84 image", reasons[21]);
        Assert.Equal("image path 'images/../../outside.png' escapes the dataset folder ('..')", reasons[22]);
        Assert.Equal("image file 'images/notimage.png' is not a readable image", reasons[23]);
        // Every problem of a line is named, not just the first.
        Assert.Equal("vqa example without image; vqa prompt has no <image> token (needs exactly one); "
                     + "object_box [3, 3, 1, 1] is not ordered (needs x0 < x1 and y0 < y1)", reasons[25]);
        Assert.Equal("""object_box must be 4 numbers [x0, y0, x1, y1], got ["1",2,3,4]""", reasons[26]);
        Assert.Equal("duplicate field 'prompt'", reasons[27]);

        var r8 = result.Rejects.Single(r => r.Line == 8);
        Assert.Equal("line 8: duplicate id 'a' (first used on line 1)", r8.Message);
        Assert.Equal(MixedLines[7], r8.RawLine);
    }

    [Fact]
    public void Accepted_example_carries_paths_box_expected_and_unknown_fields_as_metadata()
    {
        var result = ManifestReader.Read(WriteManifest(MixedLines));
        var a = result.Examples[0];
        Assert.Equal(1, a.Line);
        Assert.Equal(ManifestTasks.Vqa, a.Task);
        Assert.Equal("images/a.png", a.ImageRelative);
        Assert.Equal(Path.Combine(Path.GetFullPath(_dataDir), "images", "a.png"), a.ImagePath);
        Assert.True(Path.IsPathRooted(a.ImagePath));
        Assert.Equal("USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is", a.Prompt);
        Assert.Equal("red", a.Expected);
        Assert.Equal([1, 2, 30.5, 40], a.ObjectBox!);
        Assert.Equal("""{"shape":"circle","extra":{"k":[1,2]}}""", a.MetadataJson);

        var t = result.Examples[1];
        Assert.Equal((3, "tqa", null, null, "yellow", null, "{}"),
            (t.Line, t.Task, t.ImagePath, t.ImageRelative, t.Expected, t.ObjectBox, t.MetadataJson));

        var v = result.Examples[2];
        Assert.Equal(28, v.Line);
        Assert.Equal(a.ImagePath, v.ImagePath); // "./images/a.png" resolves to the same file
        Assert.Equal([0, 0, 84, 84], v.ObjectBox!);
    }

    [Fact]
    public void Crlf_line_ends_and_a_utf8_bom_are_accepted()
    {
        string path = Path.Combine(_dataDir, "crlf.jsonl");
        File.WriteAllText(path, string.Join("\r\n", MixedLines[0], "", MixedLines[2]) + "\r\n", new System.Text.UTF8Encoding(true));
        var result = ManifestReader.Read(path);
        Assert.Empty(result.Rejects);
        Assert.Equal([1, 3], result.Examples.Select(e => e.Line));
    }

    [Fact]
    public void Unreadable_manifest_throws_naming_the_file()
    {
        string missing = Path.Combine(_dataDir, "nope.jsonl");
        var e = Assert.Throws<IOException>(() => ManifestReader.Read(missing));
        Assert.Contains("nope.jsonl", e.Message);
        Assert.StartsWith("Cannot read dataset manifest", e.Message);
    }

    [Fact]
    public void Writer_round_trips_what_the_reader_accepted_byte_for_byte()
    {
        var first = ManifestReader.Read(WriteManifest([MixedLines[0], MixedLines[2]]));
        string copy = Path.Combine(_dataDir, "copy.jsonl");
        ManifestWriter.Write(copy, first.Examples);
        var second = ManifestReader.Read(copy);

        Assert.Empty(second.Rejects);
        Assert.Equal(first.Examples.Select(e => e with { Line = 0 }).Select(Key), second.Examples.Select(e => e with { Line = 0 }).Select(Key));
        string text = File.ReadAllText(copy);
        Assert.Contains("<image>", text); // not escaped as \u003C
        Assert.DoesNotContain("\r", text);
        Assert.Equal(2, text.Count(c => c == '\n'));
        Assert.StartsWith("""{"id":"a","task":"vqa","image":"images/a.png","prompt":"USER: <image>\n""", text);

        string third = Path.Combine(_dataDir, "third.jsonl");
        ManifestWriter.Write(third, second.Examples);
        Assert.Equal(File.ReadAllBytes(copy), File.ReadAllBytes(third));

        static string Key(ManifestExample e) => JsonSerializer.Serialize(e);
    }

    [Fact]
    public void Writer_rewrites_image_paths_relative_to_the_new_manifest_and_refuses_images_outside_it()
    {
        var ex = ManifestReader.Read(WriteManifest([MixedLines[0]])).Examples[0];
        string nested = Path.Combine(_dataDir, "sub", "m.jsonl");
        var e = Assert.Throws<ArgumentException>(() => ManifestWriter.Write(nested, [ex]));
        Assert.Contains("outside the manifest's folder", e.Message);

        string up = _tmp.File("top.jsonl");
        ManifestWriter.Write(up, [ex]);
        var back = ManifestReader.Read(up);
        Assert.Empty(back.Rejects);
        Assert.Equal("data/images/a.png", back.Examples[0].ImageRelative);
        Assert.Equal(ex.ImagePath, back.Examples[0].ImagePath);
    }

    [Fact]
    public void Validator_lists_each_bad_line_and_a_summary_and_exits_non_zero()
    {
        string path = WriteManifest(MixedLines);
        var (report, exit) = ManifestValidator.Validate(path);
        var lines = report.TrimEnd('\n').Split('\n');

        Assert.Equal(ManifestValidator.ExitBadLines, exit);
        Assert.Equal(24, lines.Length); // 23 rejects + summary
        Assert.Equal("line 8: duplicate id 'a' (first used on line 1)", lines[4]);
        Assert.Equal("line 12: image file not found: 'images/missing.png'", lines[8]);
        Assert.Equal($"{path}: 3 examples ok (2 vqa, 1 tqa; 2 with expected, 2 with object_box), 23 rejected", lines[^1]);
    }

    [Fact]
    public void Validator_exit_codes_for_clean_empty_and_missing_manifests()
    {
        var (okReport, ok) = ManifestValidator.Validate(WriteManifest([MixedLines[0], MixedLines[2]]));
        Assert.Equal(0, ok);
        Assert.EndsWith("2 examples ok (1 vqa, 1 tqa; 2 with expected, 1 with object_box), 0 rejected\n", okReport);

        string empty = Path.Combine(_dataDir, "empty.jsonl");
        File.WriteAllText(empty, "\n\n");
        var (emptyReport, emptyExit) = ManifestValidator.Validate(empty);
        Assert.Equal(1, emptyExit);
        Assert.Contains("no examples", emptyReport);

        var (missingReport, missingExit) = ManifestValidator.Validate(Path.Combine(_dataDir, "gone.jsonl"));
        Assert.Equal(2, missingExit);
        Assert.StartsWith("error: Cannot read dataset manifest", missingReport);
        Assert.Contains("gone.jsonl", missingReport);
    }
}
