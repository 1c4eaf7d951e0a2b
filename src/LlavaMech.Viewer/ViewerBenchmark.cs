using System.Diagnostics;
using System.Globalization;
using DuckDB.NET.Data;
using LlavaMech.Pipeline;
using LlavaMech.Storage;

namespace LlavaMech.Viewer;

/// <summary>Latencies of one page, milliseconds.</summary>
public sealed record PageTiming(string Page, int Requests, double FirstMs, double MedianMs, double P95Ms, double MaxMs);

public sealed record ViewerBenchmarkResult(string Run, long Examples, int Shards, double SynthesizeSeconds, double StartMs, IReadOnlyList<PageTiming> Pages);

/// <summary>
/// The viewer's benchmark: a run of <c>examples</c> examples made from a real run by replicating its rows with DuckDB
/// (ids <c>rNNNNN-&lt;id&gt;</c>, one committed shard per <c>shardSize</c> examples, parts and commit manifests in the run
/// layout), served on a free loopback port; then the wall-clock time of full HTTP requests: the first page (the very
/// first request, cold, then warm ones), the examples list, and example pages of random examples.
/// </summary>
public static class ViewerBenchmark
{
    public static async Task<ViewerBenchmarkResult> RunAsync(string sourceRun, string outDir, long examples, int shardSize, int samples, Action<string> say,
        CancellationToken ct = default)
    {
        var clock = Stopwatch.StartNew();
        long made = await SynthesizeAsync(sourceRun, outDir, examples, shardSize, say, ct).ConfigureAwait(false);
        double synth = clock.Elapsed.TotalSeconds;
        say($"synthesized {made:N0} examples in {synth:F1} s: {outDir}");

        var start = Stopwatch.StartNew();
        await using var server = await ViewerServer.StartAsync(new ViewerOptions(outDir, "127.0.0.1", 0), ct).ConfigureAwait(false);
        double startMs = start.Elapsed.TotalMilliseconds;
        say($"serve started in {start.Elapsed.TotalMilliseconds:F0} ms (opens the run, computes the front page's aggregates, listens)");
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(2) };
        async Task<double> Get(string path)
        {
            var sw = Stopwatch.StartNew();
            using var resp = await http.GetAsync(path, ct).ConfigureAwait(false);
            resp.EnsureSuccessStatusCode();
            _ = await resp.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
            return sw.Elapsed.TotalMilliseconds;
        }
        var pages = new List<PageTiming>();
        async Task Time(string name, Func<int, string> path)
        {
            var t = new List<double>();
            for (int i = 0; i < samples; i++) t.Add(await Get(path(i)).ConfigureAwait(false));
            var sorted = t.Order().ToArray();
            pages.Add(new PageTiming(name, t.Count, t[0], sorted[sorted.Length / 2], sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(0.95 * sorted.Length) - 1)], sorted[^1]));
            say($"{name,-28} first {t[0],8:F1} ms   median {sorted[sorted.Length / 2],8:F1} ms   p95 {pages[^1].P95Ms,8:F1} ms   max {sorted[^1],8:F1} ms   ({t.Count} requests)");
        }
        await Time("/ (first page)", _ => "/").ConfigureAwait(false);
        var ids = await RandomIdsAsync(outDir, samples, ct).ConfigureAwait(false);
        await Time("/examples/{id}", i => "/examples/" + Uri.EscapeDataString(ids[i])).ConfigureAwait(false);
        await Time("/api/examples/{id}", i => "/api/examples/" + Uri.EscapeDataString(ids[(i + 1) % ids.Count])).ConfigureAwait(false);
        await Time("/examples (page of 50)", i => $"/examples?offset={i * 50}").ConfigureAwait(false);
        await Time("/examples?correct=false", _ => "/examples?correct=false").ConfigureAwait(false);
        await Time("/api/heads", _ => "/api/heads").ConfigureAwait(false);
        return new ViewerBenchmarkResult(outDir, made, (int)((made + shardSize - 1) / shardSize), synth, startMs, pages);
    }

    /// <summary>Writes the replicated run into <paramref name="outDir"/> (which must not hold a run); returns its examples.</summary>
    public static async Task<long> SynthesizeAsync(string sourceRun, string outDir, long examples, int shardSize, Action<string> say, CancellationToken ct = default)
    {
        await using var source = await RunSource.OpenAsync(sourceRun, ct).ConfigureAwait(false);
        if (Directory.Exists(Path.Combine(outDir, "_commits")) && Directory.EnumerateFileSystemEntries(Path.Combine(outDir, "_commits")).Any())
            throw new ArgumentException($"{outDir} holds a run already: give an empty or new folder");
        Directory.CreateDirectory(Path.Combine(outDir, "_commits"));
        long perCopy = await source.QueryAsync(db => Convert.ToInt64(Sql.Rows(db, "SELECT count(*) FROM examples")[0][0], CultureInfo.InvariantCulture), ct).ConfigureAwait(false);
        long copies = (examples + perCopy - 1) / perCopy;
        long copiesPerShard = Math.Max(1, shardSize / perCopy);
        var tables = RunSource.Tables.Where(source.Has).ToList();
        int shard = 0;
        for (long k0 = 0; k0 < copies; k0 += copiesPerShard, shard++)
        {
            long k1 = Math.Min(copies, k0 + copiesPerShard);
            string attempt = Guid.NewGuid().ToString("N");
            var parts = new List<CommitPart>();
            await source.QueryAsync(db =>
            {
                foreach (var table in tables)
                {
                    string key = ShardCommitter.PartKey(table, shard, attempt), file = Path.Combine(outDir, key);
                    Directory.CreateDirectory(Path.GetDirectoryName(file)!);
                    // Every table's rows, once per copy k, under the id r<k>-<id> (rejects keep theirs: they have no example id).
                    string select = table == TableNames.Rejects
                        ? (k0 == 0 ? "SELECT * FROM rejects" : "SELECT * FROM rejects WHERE false")
                        : $"SELECT t.* REPLACE ('r' || lpad(c.copy_no::VARCHAR, 5, '0') || '-' || t.example_id AS example_id) FROM {table} t, range({k0}, {k1}) c(copy_no) ORDER BY c.copy_no, t.example_id";
                    using var cmd = db.CreateCommand();
                    cmd.CommandText = $"COPY ({select}) TO {Sql.Literal(file)} (FORMAT parquet, COMPRESSION snappy)";
                    long rows = Convert.ToInt64(cmd.ExecuteNonQuery(), CultureInfo.InvariantCulture);
                    parts.Add(new CommitPart(table, key, ShardCommitter.StagingKey(shard, attempt, table), rows, new FileInfo(file).Length));
                }
                return 0;
            }, ct).ConfigureAwait(false);
            var manifest = new CommitManifest(CommitManifest.CurrentFormat, shard, source.RunId, source.ModelFingerprint, attempt, DateTimeOffset.UtcNow,
                "viewer-benchmark", parts);
            await File.WriteAllBytesAsync(Path.Combine(outDir, ShardCommitter.ManifestKey(shard)), manifest.ToJson(), ct).ConfigureAwait(false);
        }
        // The run record (its manifest path: images of the source's ids) and summary, as the source has them.
        foreach (var key in new[] { RunRecord.Key, Finalizer.SummaryKey })
        {
            string from = Path.Combine(OutputLocation.Parse(sourceRun).LocalPath ?? "", key);
            if (File.Exists(from))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(outDir, key))!);
                File.Copy(from, Path.Combine(outDir, key), overwrite: true);
            }
        }
        say($"{shard} shards of {copiesPerShard * perCopy} examples");
        return copies * perCopy;
    }

    private static async Task<List<string>> RandomIdsAsync(string run, int n, CancellationToken ct)
    {
        await using var db = new DuckDBConnection("DataSource=:memory:");
        await db.OpenAsync(ct).ConfigureAwait(false);
        return Sql.Rows(db, $"SELECT example_id FROM read_parquet({Sql.Literal(Path.Combine(run, TableNames.Examples, "*.parquet"))}) USING SAMPLE {n + 1} ROWS (reservoir, 17)")
            .Select(r => (string)r[0]!).ToList();
    }
}
