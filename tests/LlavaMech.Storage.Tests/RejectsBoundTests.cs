using System.Security.Cryptography;
using System.Text;
using Parquet;
using Parquet.Schema;

namespace LlavaMech.Storage.Tests;

/// <summary>A huge bad input line makes a small rejects file: a prefix, the length and the hash, no min/max statistics of free text.</summary>
public class RejectsBoundTests
{
    [Fact]
    public async Task A_100_MB_rejected_line_is_stored_as_its_start_length_and_hash_in_a_small_file()
    {
        using var dir = new TempDir();
        string line = "{\"id\":\"big\",\"prompt\":\"" + new string('é', 50_000_000) + "\"}";   // 100 MB of UTF-8
        byte[] bytes = Encoding.UTF8.GetBytes(line);
        var rejects = new RowBatch<RejectRow>("r", "m");
        rejects.Add(RejectRow.Of(7, "prompt is too long: " + new string('z', 5000), line));
        rejects.Add(RejectRow.Of(8, "invalid JSON", "{x"));
        string path = dir.File("rejects.parquet");
        await rejects.WriteParquetAsync(path);

        long size = new FileInfo(path).Length;
        Assert.True(size < 16 << 10, $"rejects file is {size} bytes");
        var rows = Duck.Rows($"SELECT line, reason, raw, raw_bytes, raw_sha256 FROM read_parquet({Duck.Q(path)}) ORDER BY line");
        Assert.Equal(7, rows[0][0]);
        Assert.Equal(RejectRow.ReasonChars, ((string)rows[0][1]!).Length);
        Assert.Equal(line[..RejectRow.RawPrefixChars], rows[0][2]);
        Assert.Equal((long)bytes.Length, rows[0][3]);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), rows[0][4]);
        Assert.Equal(new object?[] { 8, "invalid JSON", "{x", 2L, Convert.ToHexStringLower(SHA256.HashData("{x"u8)) }, rows[1]);
    }

    [Fact]
    public async Task The_footer_statistics_of_raw_and_reason_stay_within_the_caps()
    {
        // Parquet.Net 6.1 always writes min/max of string columns; the caps are what keeps them small.
        using var dir = new TempDir();
        var rejects = new RowBatch<RejectRow>("r", "m");
        rejects.Add(RejectRow.Of(1, new string('b', 100_000), new string('b', 1_000_000)));
        rejects.Add(RejectRow.Of(2, new string('a', 100_000), new string('a', 1_000_000)));
        string path = dir.File("rejects.parquet");
        await rejects.WriteParquetAsync(path);

        await using var reader = await ParquetReader.CreateAsync(path);
        var columns = reader.Metadata!.RowGroups[0].Columns.ToDictionary(c => string.Join(".", c.MetaData!.PathInSchema), c => c.MetaData!.Statistics);
        foreach (var (col, cap) in new[] { ("raw", RejectRow.RawPrefixChars), ("reason", RejectRow.ReasonChars) })
        {
            var st = columns[col];
            foreach (var v in new[] { st?.MinValue ?? st?.Min, st?.MaxValue ?? st?.Max })
                Assert.True(v is null || v.Length <= cap, $"{col}: footer statistic of {v?.Length} bytes");
        }
        Assert.Equal(new string('a', RejectRow.RawPrefixChars), Encoding.UTF8.GetString(columns["raw"]!.MinValue!));
        Assert.True(new FileInfo(path).Length < 16 << 10, $"{new FileInfo(path).Length} bytes");
    }
}
