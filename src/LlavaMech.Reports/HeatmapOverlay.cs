using SkiaSharp;

namespace LlavaMech.Reports;

/// <summary>A patch-score grid drawn as a smooth jet heatmap blended over the image it was computed on.</summary>
public static class HeatmapOverlay
{
    /// <summary>Weight of the heatmap in the blend; 0.5 keeps the image recognisable under the colours.</summary>
    public const float DefaultAlpha = 0.5f;

    /// <summary>
    /// Renders <paramref name="grid"/> (gridSide x gridSide, row-major, row 0 = top of the image) over the
    /// image <paramref name="rgb"/> ([h, w, 3] uint8), both scaled by the integer <paramref name="scale"/>.
    /// The grid is min-max normalised to [0, 1], upsampled bicubically to the output size, coloured with
    /// <see cref="Colormaps.Jet"/> and alpha-blended: out = (1 - alpha) * image + alpha * colour.
    /// The caller owns (disposes) the returned bitmap, which is (w*scale) x (h*scale), opaque RGBA.
    /// </summary>
    public static SKBitmap Render(byte[] rgb, int h, int w, float[] grid, int gridSide, int scale, float alpha = DefaultAlpha)
    {
        if (scale < 1) throw new ArgumentOutOfRangeException(nameof(scale), "scale must be >= 1");
        if (!(alpha >= 0 && alpha <= 1)) throw new ArgumentOutOfRangeException(nameof(alpha), "alpha must be in [0, 1]");
        CheckGrid(grid, gridSide);
        using var src = Drawing.FromRgb(rgb, h, w);
        var output = Drawing.Upscale(src, scale);
        int outW = output.Width, outH = output.Height;

        var heat = Upsample(Normalize(grid), gridSide, outH, outW);
        var px = new byte[outW * outH * 4];
        System.Runtime.InteropServices.Marshal.Copy(output.GetPixels(), px, 0, px.Length);
        // Jet over 256 levels is exact enough for display and avoids 100k+ colormap evaluations.
        var lut = new (byte R, byte G, byte B)[256];
        for (int i = 0; i < 256; i++) lut[i] = Colormaps.Jet(i / 255.0);
        float keep = 1 - alpha;
        for (int p = 0, j = 0; p < heat.Length; p++, j += 4)
        {
            var c = lut[(int)MathF.Round(heat[p] * 255)];
            px[j] = (byte)MathF.Round(keep * px[j] + alpha * c.R);
            px[j + 1] = (byte)MathF.Round(keep * px[j + 1] + alpha * c.G);
            px[j + 2] = (byte)MathF.Round(keep * px[j + 2] + alpha * c.B);
            px[j + 3] = 255;
        }
        System.Runtime.InteropServices.Marshal.Copy(px, 0, output.GetPixels(), px.Length);
        return output;
    }

    /// <summary>
    /// Min-max normalisation to [0, 1] for display. Non-finite entries map to 0; a constant grid maps to
    /// all zeros (there is no "where" to show).
    /// </summary>
    public static float[] Normalize(float[] grid)
    {
        ArgumentNullException.ThrowIfNull(grid);
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (var v in grid)
        {
            if (!float.IsFinite(v)) continue;
            if (v < min) min = v;
            if (v > max) max = v;
        }
        var result = new float[grid.Length];
        if (!(max > min)) return result;
        float range = max - min;
        for (int i = 0; i < grid.Length; i++)
            result[i] = float.IsFinite(grid[i]) ? (grid[i] - min) / range : 0f;
        return result;
    }

    /// <summary>
    /// Bicubic (Keys, a = -0.5, as PIL) upsampling of a side x side grid to outH x outW with half-pixel
    /// centres (align_corners = false), so each cell's value sits at the centre of its image region.
    /// Results are clamped to [0, 1] because cubic overshoot would fall off the colormap.
    /// </summary>
    public static float[] Upsample(float[] grid, int side, int outH, int outW)
    {
        CheckGrid(grid, side);
        if (outH <= 0 || outW <= 0) throw new ArgumentOutOfRangeException(nameof(outH), "output size must be positive");
        var (colIdx, colW) = CubicTaps(side, outW);
        var (rowIdx, rowW) = CubicTaps(side, outH);

        // Separable: rows first (side x outW), then columns (outH x outW).
        var tmp = new float[side * outW];
        for (int r = 0; r < side; r++)
            for (int x = 0; x < outW; x++)
            {
                float s = 0;
                for (int k = 0; k < 4; k++) s += colW[x * 4 + k] * grid[r * side + colIdx[x * 4 + k]];
                tmp[r * outW + x] = s;
            }
        var result = new float[outH * outW];
        for (int y = 0; y < outH; y++)
            for (int x = 0; x < outW; x++)
            {
                float s = 0;
                for (int k = 0; k < 4; k++) s += rowW[y * 4 + k] * tmp[rowIdx[y * 4 + k] * outW + x];
                result[y * outW + x] = Math.Clamp(s, 0f, 1f);
            }
        return result;
    }

    private static (int[] Idx, float[] W) CubicTaps(int inSize, int outSize)
    {
        var idx = new int[outSize * 4];
        var wts = new float[outSize * 4];
        double ratio = (double)inSize / outSize;
        for (int o = 0; o < outSize; o++)
        {
            double u = (o + 0.5) * ratio - 0.5;
            int i0 = (int)Math.Floor(u);
            double t = u - i0;
            for (int k = 0; k < 4; k++)
            {
                idx[o * 4 + k] = Math.Clamp(i0 - 1 + k, 0, inSize - 1); // replicate the border
                wts[o * 4 + k] = (float)Keys(t - (k - 1));
            }
        }
        return (idx, wts);
    }

    private static double Keys(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
        if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
        return 0;
    }

    internal static void CheckGrid(float[] grid, int side)
    {
        ArgumentNullException.ThrowIfNull(grid);
        if (side <= 0) throw new ArgumentOutOfRangeException(nameof(side), "gridSide must be positive");
        if (grid.Length != side * side)
            throw new ArgumentException($"grid has {grid.Length} values, expected gridSide^2 = {side * side}", nameof(grid));
    }
}
