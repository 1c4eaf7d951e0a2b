namespace LlavaMech.Processing;

/// <summary>
/// Pillow's <c>Image.resize(..., BICUBIC)</c> for 8-bit images, ported from <c>libImaging/Resample.c</c>
/// (<c>ImagingResampleInner</c>, <c>precompute_coeffs</c>, <c>normalize_coeffs_8bpc</c>,
/// <c>ImagingResampleHorizontal_8bpc</c> / <c>Vertical_8bpc</c>) so that results are bit-identical:
/// separable convolution, horizontal pass first then vertical; the bicubic kernel (a = -0.5, support 2)
/// is stretched by the downscale factor when shrinking (antialiasing); coefficients are normalized to sum 1,
/// then turned into fixed point with 22 fractional bits and rounded; each pass rounds and clips to uint8;
/// a pass whose size does not change is skipped. The box is always the whole image (as in <c>resize(size)</c>).
/// </summary>
internal static class PilResample
{
    private const int PrecisionBits = 32 - 8 - 2;
    private const double BicubicSupport = 2.0;

    /// <summary>Resizes interleaved 8-bit pixels [height, width, channels] to [outHeight, outWidth, channels].</summary>
    public static byte[] Bicubic(byte[] src, int width, int height, int channels, int outWidth, int outHeight)
    {
        ArgumentNullException.ThrowIfNull(src);
        if (width <= 0 || height <= 0 || outWidth <= 0 || outHeight <= 0 || channels <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), "sizes must be positive");
        if (src.Length != (long)width * height * channels)
            throw new ArgumentException($"expected {(long)width * height * channels} bytes, got {src.Length}", nameof(src));

        // Image.resize returns a copy when the size does not change.
        if (width == outWidth && height == outHeight) return (byte[])src.Clone();

        bool needHorizontal = outWidth != width;
        bool needVertical = outHeight != height;

        var (kh, boundsH, coeffsH) = PrecomputeCoeffs(width, 0f, width, outWidth);
        var (kv, boundsV, coeffsV) = PrecomputeCoeffs(height, 0f, height, outHeight);

        byte[] current = src;
        int curW = width;
        int rowOffset = 0; // first source row the vertical pass reads, relative to `current`
        if (needHorizontal)
        {
            // Only the rows the vertical pass uses are resampled horizontally.
            int yFirst = boundsV[0];
            int yLast = boundsV[(outHeight - 1) * 2] + boundsV[(outHeight - 1) * 2 + 1];
            current = Horizontal(src, width, channels, yFirst, yLast - yFirst, outWidth, kh, boundsH, coeffsH);
            curW = outWidth;
            rowOffset = -yFirst;
        }
        if (needVertical)
            current = Vertical(current, curW, channels, rowOffset, outHeight, kv, boundsV, coeffsV);
        return current;
    }

    private static double BicubicFilter(double x)
    {
        const double a = -0.5;
        if (x < 0.0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    /// <summary>precompute_coeffs followed by normalize_coeffs_8bpc.</summary>
    private static (int KSize, int[] Bounds, int[] Coeffs) PrecomputeCoeffs(int inSize, float in0, float in1, int outSize)
    {
        double scale = (double)(in1 - in0) / outSize;
        double filterscale = scale < 1.0 ? 1.0 : scale;
        double support = BicubicSupport * filterscale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;

        var kk = new double[outSize * ksize];
        var bounds = new int[outSize * 2];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = in0 + (xx + 0.5) * scale;
            double ww = 0.0;
            double ss = 1.0 / filterscale;
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            int k = xx * ksize;
            for (int x = 0; x < xmax; x++)
            {
                double w = BicubicFilter((x + xmin - center + 0.5) * ss);
                kk[k + x] = w;
                ww += w;
            }
            for (int x = 0; x < xmax; x++)
                if (ww != 0.0) kk[k + x] /= ww;
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }

        var fixedPoint = new int[kk.Length];
        for (int i = 0; i < kk.Length; i++)
            fixedPoint[i] = kk[i] < 0
                ? (int)(-0.5 + kk[i] * (1 << PrecisionBits))
                : (int)(0.5 + kk[i] * (1 << PrecisionBits));
        return (ksize, bounds, fixedPoint);
    }

    private static byte Clip8(int v)
    {
        if (v >= (1 << PrecisionBits << 8)) return 255;
        if (v <= 0) return 0;
        return (byte)(v >> PrecisionBits);
    }

    private static byte[] Horizontal(byte[] src, int width, int channels, int firstRow, int rows, int outWidth,
        int ksize, int[] bounds, int[] kk)
    {
        // Integer sums are exact in any order, so the loops are arranged for speed; the arithmetic is PIL's.
        var dst = new byte[rows * outWidth * channels];
        const int half = 1 << (PrecisionBits - 1);
        if (channels == 3)
        {
            for (int yy = 0; yy < rows; yy++)
            {
                var srcRow = src.AsSpan((yy + firstRow) * width * 3, width * 3);
                var dstRow = dst.AsSpan(yy * outWidth * 3, outWidth * 3);
                for (int xx = 0; xx < outWidth; xx++)
                {
                    int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
                    var k = kk.AsSpan(xx * ksize, xmax);
                    var px = srcRow.Slice(xmin * 3, xmax * 3);
                    int ss0 = half, ss1 = half, ss2 = half;
                    for (int x = 0; x < k.Length; x++)
                    {
                        int coeff = k[x];
                        ss0 += px[x * 3] * coeff;
                        ss1 += px[x * 3 + 1] * coeff;
                        ss2 += px[x * 3 + 2] * coeff;
                    }
                    dstRow[xx * 3] = Clip8(ss0);
                    dstRow[xx * 3 + 1] = Clip8(ss1);
                    dstRow[xx * 3 + 2] = Clip8(ss2);
                }
            }
            return dst;
        }

        var acc = new int[channels];
        for (int yy = 0; yy < rows; yy++)
        {
            int srcRow = (yy + firstRow) * width * channels;
            int dstRow = yy * outWidth * channels;
            for (int xx = 0; xx < outWidth; xx++)
            {
                int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], k = xx * ksize;
                Array.Fill(acc, half);
                for (int x = 0; x < xmax; x++)
                {
                    int coeff = kk[k + x];
                    int p = srcRow + (x + xmin) * channels;
                    for (int c = 0; c < channels; c++) acc[c] += src[p + c] * coeff;
                }
                for (int c = 0; c < channels; c++) dst[dstRow + xx * channels + c] = Clip8(acc[c]);
            }
        }
        return dst;
    }

    private static byte[] Vertical(byte[] src, int width, int channels, int rowOffset, int outHeight,
        int ksize, int[] bounds, int[] kk)
    {
        var dst = new byte[outHeight * width * channels];
        const int half = 1 << (PrecisionBits - 1);
        int stride = width * channels;
        var acc = new int[stride];
        for (int yy = 0; yy < outHeight; yy++)
        {
            int ymin = bounds[yy * 2] + rowOffset, ymax = bounds[yy * 2 + 1], k = yy * ksize;
            Array.Fill(acc, half);
            for (int y = 0; y < ymax; y++)
            {
                int coeff = kk[k + y];
                var row = src.AsSpan((y + ymin) * stride, stride);
                for (int i = 0; i < row.Length; i++) acc[i] += row[i] * coeff;
            }
            var dstRow = dst.AsSpan(yy * stride, stride);
            for (int i = 0; i < dstRow.Length; i++) dstRow[i] = Clip8(acc[i]);
        }
        return dst;
    }
}
