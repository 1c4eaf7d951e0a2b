namespace LlavaMech.Hooks.Tests;

public class ImageTokenLayoutTests
{
    [Fact]
    public void A_single_grid_maps_tokens_to_cells_row_major()
    {
        var layout = ImageTokenLayout.SingleGrid(offset: 3, rows: 2, cols: 3, hasCls: false);
        Assert.Equal(new[] { 3, 4, 5, 6, 7, 8 }, layout.Positions);
        Assert.Equal(new GridCell(0, 1, 0), layout.CellAt(6));
        Assert.Equal(new GridCell(0, 0, 2), layout.CellOf(2));
        Assert.Null(layout.CellAt(2));
        Assert.Null(layout.CellAt(9));
        Assert.True(layout.Contains(8));
        Assert.False(layout.Contains(9));
        Assert.Equal(new[] { 10, 11, 12, 13, 14, 15 }, layout.GridValues(new[] { 10, 11, 12, 13, 14, 15 }));
        Assert.Throws<InvalidOperationException>(() => layout.Grid.Side);
        Assert.Throws<ArgumentException>(() => layout.GridValues(new[] { 1, 2, 3 }));
    }

    [Fact]
    public void The_class_token_is_no_patch()
    {
        var layout = ImageTokenLayout.SingleGrid(offset: 1, rows: 2, cols: 2, hasCls: true);
        Assert.Equal(5, layout.Count);
        Assert.Null(layout.CellOf(0));
        Assert.Equal(new GridCell(0, 0, 0), layout.CellOf(1));
        Assert.Equal(new[] { 2, 3, 4, 5 }, layout.GridPositions());
        Assert.Equal(new[] { 1.0, 2, 3, 4 }, layout.GridValues(new[] { 99.0, 1, 2, 3, 4 }));
        Assert.Equal(2, layout.Grid.Side);
    }

    [Fact]
    public void Several_grids_with_a_separator_per_row_describe_tiles()
    {
        // A LLaVA-NeXT-like image: a 2 x 2 base grid, then a 2 x 3 tile grid whose rows end with a newline token.
        var layout = new ImageTokenLayout(offset: 10, count: 4 + 2 * 4, hasCls: false,
            [new ImageGrid(0, 2, 2), new ImageGrid(4, 2, 3, rowStride: 4)]);
        Assert.Equal(new GridCell(0, 1, 1), layout.CellOf(3));
        Assert.Equal(new GridCell(1, 0, 2), layout.CellOf(6));
        Assert.Null(layout.CellOf(7));                                       // the first row's newline
        Assert.Equal(new GridCell(1, 1, 0), layout.CellOf(8));
        Assert.Equal(new[] { 4, 5, 6, 8, 9, 10 }, layout.GridTokenIndices(1));
        Assert.Throws<InvalidOperationException>(() => layout.Grid);
    }

    [Fact]
    public void Grids_that_do_not_fit_the_tokens_are_refused()
    {
        Assert.Throws<ArgumentException>(() => new ImageTokenLayout(0, 5, false, [new ImageGrid(0, 2, 3)]));
        Assert.Throws<ArgumentException>(() => new ImageTokenLayout(0, 4, true, [new ImageGrid(0, 2, 2)]));   // the grid would cover the class token
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImageGrid(0, 0, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImageGrid(0, 2, 3, rowStride: 2));
        Assert.Equal(ImageTokenLayout.SingleGrid(2, 3, 3, true), ImageTokenLayout.SingleGrid(2, 3, 3, true));
        Assert.NotEqual(ImageTokenLayout.SingleGrid(2, 3, 3, true), ImageTokenLayout.SingleGrid(2, 3, 3, false));
    }
}
