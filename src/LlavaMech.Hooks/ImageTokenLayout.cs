namespace LlavaMech.Hooks;

/// <summary>
/// One grid of patch tokens inside an image's block of tokens: <see cref="Rows"/> x <see cref="Cols"/> patches, row-major,
/// row 0 at the top, starting at image-token index <see cref="Start"/>. Each row spans <see cref="RowStride"/> tokens:
/// <see cref="Cols"/>, or one more where a separator token ends every row (LLaVA-NeXT's image newline).
/// </summary>
public sealed record ImageGrid
{
    public ImageGrid(int start, int rows, int cols, int? rowStride = null)
    {
        int stride = rowStride ?? cols;
        if (start < 0) throw new ArgumentOutOfRangeException(nameof(start), start, "an image grid starts at image token 0 or later");
        if (rows <= 0 || cols <= 0) throw new ArgumentOutOfRangeException(nameof(rows), $"an image grid needs at least one row and column, got {rows} x {cols}");
        if (stride < cols) throw new ArgumentOutOfRangeException(nameof(rowStride), stride, $"a row of {cols} patches spans at least {cols} tokens");
        Start = start; Rows = rows; Cols = cols; RowStride = stride;
    }

    /// <summary>Index of the grid's first token among the image's tokens.</summary>
    public int Start { get; }
    public int Rows { get; }
    public int Cols { get; }
    /// <summary>Tokens per row: <see cref="Cols"/> plus any separator tokens after each row.</summary>
    public int RowStride { get; }
    /// <summary>Patches of the grid.</summary>
    public int Cells => Rows * Cols;
    /// <summary>Tokens the grid spans, separators included.</summary>
    public int Tokens => Rows * RowStride;

    /// <summary>The side of a square grid; throws for a grid that is not square (for figures drawn on square grids).</summary>
    public int Side => Rows == Cols ? Rows : throw new InvalidOperationException($"the image grid is {Rows} x {Cols}, not square");

    /// <summary>Image-token index of the patch at (<paramref name="row"/>, <paramref name="col"/>).</summary>
    public int TokenIndex(int row, int col)
    {
        if ((uint)row >= (uint)Rows || (uint)col >= (uint)Cols)
            throw new ArgumentOutOfRangeException(nameof(row), $"cell ({row}, {col}) is outside the {Rows} x {Cols} grid");
        return Start + row * RowStride + col;
    }
}

/// <summary>A patch: which grid of the image, and its row and column there.</summary>
public readonly record struct GridCell(int Grid, int Row, int Col);

/// <summary>The part of an image an image token belongs to: the base image (LLaVA-1.5's only grid, LLaVA-NeXT's downscaled
/// whole image), the high-resolution grid of tiles (LLaVA-NeXT), a row-ending newline (LLaVA-NeXT), or the class token.</summary>
public enum ImagePart { Base, Grid, Newline, Cls }

/// <summary>An image token's place: its part and its row and column in that part's grid (a newline: its row, and the
/// column just past the grid's last).</summary>
public readonly record struct ImagePlace(ImagePart Part, int Row, int Col)
{
    /// <summary>"base", "grid", "newline" or "cls": the table value.</summary>
    public string PartName => Part switch { ImagePart.Base => "base", ImagePart.Grid => "grid", ImagePart.Newline => "newline", _ => "cls" };
}

/// <summary>
/// LLaVA-NeXT's tiling of one image (docs/METHOD_NEXT.md section 6): GR x GC tiles of p x p patches make an R x C feature grid
/// (R = GR*p, C = GC*p), of which unpadding keeps rows KeepRowStart .. +KeptRows and columns KeepColStart .. +KeptCols; the
/// model packs its features by this, and figures map the kept grid back onto the picture.
/// </summary>
public sealed record ImageTiling(int TileRows, int TileCols, int PatchesPerTile, int KeepRowStart, int KeptRows, int KeepColStart, int KeptCols,
    int ImageHeight, int ImageWidth)
{
    public int FeatureRows => TileRows * PatchesPerTile;
    public int FeatureCols => TileCols * PatchesPerTile;
}

/// <summary>
/// Where one image's tokens are in a prepared input and which patch each one is: a contiguous block of
/// <see cref="Count"/> tokens from sequence position <see cref="Offset"/>, an optional class-token feature first
/// (strategy <c>full</c>), and one or more patch grids. LLaVA-1.5 has one grid (image_size / patch_size on each side);
/// LLaVA-NeXT would list the base image's grid and its tiles, with a newline token per row (<see cref="ImageGrid.RowStride"/>).
/// Built by the model from its configuration where the input is prepared, never guessed from a token count.
/// </summary>
public sealed record ImageTokenLayout
{
    private readonly int[] _positions;

    public ImageTokenLayout(int offset, int count, bool hasCls, IReadOnlyList<ImageGrid> grids)
    {
        ArgumentNullException.ThrowIfNull(grids);
        if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset), offset, "image tokens start at position 0 or later");
        if (grids.Count == 0) throw new ArgumentException("an image layout needs at least one grid", nameof(grids));
        int first = hasCls ? 1 : 0;
        foreach (var g in grids)
            if (g.Start < first || g.Start + g.Tokens > count)
                throw new ArgumentException($"grid of {g.Rows} x {g.Cols} at image token {g.Start} does not fit {count} image tokens{(hasCls ? " after the class token" : "")}", nameof(grids));
        Offset = offset; Count = count; HasCls = hasCls; Grids = grids.ToArray();
        _positions = Enumerable.Range(offset, count).ToArray();
    }

    /// <summary>One grid of <paramref name="rows"/> x <paramref name="cols"/> patches (LLaVA-1.5), after the class token when <paramref name="hasCls"/>.</summary>
    public static ImageTokenLayout SingleGrid(int offset, int rows, int cols, bool hasCls) =>
        new(offset, rows * cols + (hasCls ? 1 : 0), hasCls, [new ImageGrid(hasCls ? 1 : 0, rows, cols)]);

    /// <summary>Sequence position of the first image token.</summary>
    public int Offset { get; }
    /// <summary>Image tokens: the class token, the patches and any row separators.</summary>
    public int Count { get; }
    /// <summary>Image token 0 is the class-token feature (no patch).</summary>
    public bool HasCls { get; }
    public IReadOnlyList<ImageGrid> Grids { get; }

    /// <summary>Sequence positions of the image tokens, ascending.</summary>
    public int[] Positions => _positions;

    /// <summary>LLaVA-NeXT: how the image was tiled and unpadded (grid 0 is the base tile, grid 1 the kept high-resolution
    /// grid with a newline ending each row); null for a single grid.</summary>
    public ImageTiling? Tiling { get; init; }

    /// <summary>
    /// Where image token <paramref name="tokenIndex"/> (0..Count-1) lies: the base grid (LLaVA-1.5's every patch), the
    /// high-resolution grid or a newline (LLaVA-NeXT), with its row and column in that part's grid.
    /// </summary>
    public ImagePlace PlaceOf(int tokenIndex)
    {
        if ((uint)tokenIndex >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(tokenIndex), tokenIndex, $"the image has {Count} tokens");
        if (HasCls && tokenIndex == 0) return new ImagePlace(ImagePart.Cls, 0, 0);
        if (Tiling is { } t)
        {
            int baseTokens = t.PatchesPerTile * t.PatchesPerTile;
            if (tokenIndex < baseTokens) return new ImagePlace(ImagePart.Base, tokenIndex / t.PatchesPerTile, tokenIndex % t.PatchesPerTile);
            int rel = tokenIndex - baseTokens, stride = t.KeptCols + 1;
            int row = rel / stride, col = rel % stride;
            return new ImagePlace(col == t.KeptCols ? ImagePart.Newline : ImagePart.Grid, row, col);
        }
        var cell = CellOf(tokenIndex);
        if (cell is { } c) return new ImagePlace(c.Grid == 0 ? ImagePart.Base : ImagePart.Grid, c.Row, c.Col);
        // A separator ending a row of a grid.
        foreach (var g in Grids)
        {
            int rel = tokenIndex - g.Start;
            if (rel >= 0 && rel < g.Tokens) return new ImagePlace(ImagePart.Newline, rel / g.RowStride, g.Cols);
        }
        throw new InvalidOperationException($"image token {tokenIndex} lies in no grid of the layout");
    }

    /// <summary>The place of the token at sequence position <paramref name="position"/>, or null for a text position.</summary>
    public ImagePlace? PlaceAt(int position) => Contains(position) ? PlaceOf(position - Offset) : null;

    public bool Equals(ImageTokenLayout? other) =>
        other is not null && Offset == other.Offset && Count == other.Count && HasCls == other.HasCls && Grids.SequenceEqual(other.Grids) &&
        Equals(Tiling, other.Tiling);

    public override int GetHashCode() => HashCode.Combine(Offset, Count, HasCls, Grids.Count);

    /// <summary>The only grid; throws where the layout has several (a consumer that handles one grid).</summary>
    public ImageGrid Grid => Grids.Count == 1 ? Grids[0] : throw new InvalidOperationException($"the image has {Grids.Count} grids; this view handles one");

    /// <summary>The patch of image token <paramref name="tokenIndex"/> (0..Count-1), or null for the class token or a separator.</summary>
    public GridCell? CellOf(int tokenIndex)
    {
        for (int i = 0; i < Grids.Count; i++)
        {
            var g = Grids[i];
            int rel = tokenIndex - g.Start;
            if (rel < 0 || rel >= g.Tokens) continue;
            int col = rel % g.RowStride;
            return col < g.Cols ? new GridCell(i, rel / g.RowStride, col) : null;
        }
        return null;
    }

    /// <summary>Whether sequence position <paramref name="position"/> holds an image token.</summary>
    public bool Contains(int position) => position >= Offset && position < Offset + Count;

    /// <summary>The patch at sequence position <paramref name="position"/>, or null when it holds no patch.</summary>
    public GridCell? CellAt(int position) => Contains(position) ? CellOf(position - Offset) : null;

    /// <summary>Image-token indices of one grid's patches, row-major.</summary>
    public int[] GridTokenIndices(int grid = 0)
    {
        var g = Grids[grid];
        var r = new int[g.Cells];
        for (int row = 0, k = 0; row < g.Rows; row++)
            for (int col = 0; col < g.Cols; col++) r[k++] = g.TokenIndex(row, col);
        return r;
    }

    /// <summary>Sequence positions of one grid's patches, row-major.</summary>
    public int[] GridPositions(int grid = 0) => GridTokenIndices(grid).Select(k => Offset + k).ToArray();

    /// <summary>One grid's values, row-major, from values per image token (<paramref name="perToken"/> has <see cref="Count"/> entries).</summary>
    public T[] GridValues<T>(IReadOnlyList<T> perToken, int grid = 0)
    {
        if (perToken.Count != Count) throw new ArgumentException($"{perToken.Count} values for {Count} image tokens", nameof(perToken));
        return GridTokenIndices(grid).Select(k => perToken[k]).ToArray();
    }
}
