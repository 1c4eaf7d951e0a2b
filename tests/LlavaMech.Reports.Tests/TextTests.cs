namespace LlavaMech.Reports.Tests;

public class MarkdownTableTests
{
    [Fact]
    public void Renders_padded_table_with_numbers_right_aligned()
    {
        string md = MarkdownTable.Render(
            ["method", "AUC", "note"],
            [["raw attention", "0.412", "baseline"], ["log increase", "0.587", ""]]);
        Assert.Equal(
            "| method        |   AUC | note     |\n" +
            "| ------------- | ----: | -------- |\n" +
            "| raw attention | 0.412 | baseline |\n" +
            "| log increase  | 0.587 |          |\n", md);
    }

    [Fact]
    public void Escapes_pipes_pads_short_rows_and_treats_percent_and_minus_as_numbers()
    {
        string md = MarkdownTable.Render(["a|b", "x"], [["p|q", "-1.5"], ["r"], ["s", "12%"]]);
        Assert.Equal(
            "| a\\|b |    x |\n" +
            "| ---- | ---: |\n" +
            "| p\\|q | -1.5 |\n" +
            "| r    |      |\n" +
            "| s    |  12% |\n", md);
    }

    [Fact]
    public void Header_only_table_and_bad_rows()
    {
        Assert.Equal("| k   |\n| --- |\n", MarkdownTable.Render(["k"], []));
        Assert.Throws<ArgumentException>(() => MarkdownTable.Render(["a"], [["1", "2"]]));
    }
}

public class AsciiGridTests
{
    [Fact]
    public void Render_maps_normalised_values_to_shades_two_chars_per_cell()
    {
        Assert.Equal("  @@\n--**\n", AsciiGrid.Render([0f, 3f, 1f, 2f], 2));
        Assert.Equal("    \n    \n", AsciiGrid.Render([5f, 5f, 5f, 5f], 2)); // constant: nothing stands out
    }

    [Fact]
    public void Describe_reports_peak_region_and_mass_concentration()
    {
        // 10x10: ten patches carry 62 of 100 units of mass, the peak at row 2, col 1.
        var g = new float[100];
        for (int i = 0; i < 100; i++) g[i] = 38f / 90f;
        g[2 * 10 + 1] = 8f;
        foreach (int i in new[] { 50, 51, 52, 60, 61, 62, 70, 71, 99 }) g[i] = 6f;
        Assert.Equal("peak at row 2, col 1 (upper left); 62% of the mass in the top 10% of patches", AsciiGrid.Describe(g, 10));
    }

    [Fact]
    public void Describe_ignores_negative_mass_and_names_regions()
    {
        Assert.Equal("peak at row 1, col 1 (centre); no positive mass",
            AsciiGrid.Describe([-3f, -3f, -3f, -3f, -1f, -3f, -3f, -3f, -3f], 3));
        Assert.Equal("lower right", AsciiGrid.Region(23, 23, 24));
        Assert.Equal("middle left", AsciiGrid.Region(12, 0, 24));
        Assert.Equal("upper centre", AsciiGrid.Region(0, 12, 24));
    }
}
