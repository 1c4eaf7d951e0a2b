using System.Globalization;
using DuckDB.NET.Data;
using static LlavaMech.Storage.DuckDbSql;

namespace LlavaMech.Storage;

/// <summary>Settings of <see cref="Aggregates"/>.</summary>
public sealed record AggregateOptions
{
    /// <summary>k of the top-k share: a head (layer component) counts for an example when it is among that example's k largest log-prob increases.</summary>
    public int TopK { get; init; } = 10;

    /// <summary>Write the summary as a Parquet table into the store (<c>head_summary/head_summary.parquet</c>, replaced each time).</summary>
    public bool Write { get; init; } = true;

    /// <summary>Where remote parts are downloaded for DuckDB (default: the system temp folder); removed afterwards.</summary>
    public string? ScratchDir { get; init; }
}

/// <summary>
/// One row of <c>head_summary</c>: the distribution of one head's log-prob increase over the examples of one
/// (model_fingerprint, task, outcome) group. Outcome is "correct", "incorrect", "unknown" (no expected answer) or "all".
/// </summary>
public sealed record HeadSummaryRow(
    string ModelFingerprint, string Task, string Outcome, int Layer, int Head, long NExamples,
    double Mean, double? Stddev, double Q10, double Q50, double Q90, int TopK, double TopKShare, double? MeanAttnToImage);

/// <summary>One row of <c>layer_summary</c>: as <see cref="HeadSummaryRow"/>, for one layer's attention or FFN block.</summary>
public sealed record LayerSummaryRow(
    string ModelFingerprint, string Task, string Outcome, int Layer, string Component, long NExamples,
    double Mean, double? Stddev, double Q10, double Q50, double Q90, int TopK, double TopKShare);

/// <summary>
/// Summaries over all committed parts, computed by DuckDB SQL over the Parquet files (only the parts that commit
/// manifests list, so staged or lost attempts never count). Stats rows are joined to <c>examples</c> on
/// (run_id, model_fingerprint, example_id) for task and correctness. Statistics: count, mean, sample standard
/// deviation (null for one example), quantiles 0.1/0.5/0.9 with linear interpolation (numpy's default), and the share
/// of examples in which the unit is in the example's top k by log-prob increase (ties broken by layer, then head or
/// component). See TABLES.md.
/// </summary>
public static partial class Aggregates
{
    public const string HeadSummaryKey = TableNames.HeadSummary + "/" + TableNames.HeadSummary + ".parquet";
    public const string LayerSummaryKey = TableNames.LayerSummary + "/" + TableNames.LayerSummary + ".parquet";

    /// <summary>Computes <c>head_summary</c> from <c>head_stats</c> + <c>examples</c> (and writes it unless told not to).</summary>
    public static async Task<IReadOnlyList<HeadSummaryRow>> HeadSummaryAsync(IObjectStore store, AggregateOptions? options = null, CancellationToken ct = default)
    {
        options ??= new AggregateOptions();
        int k = CheckK(options.TopK);
        string sql = SummarySql(TableNames.HeadStats, ["layer", "head"], "attn_to_image", k);
        return await RunAsync(store, options, TableNames.HeadStats, sql, HeadSummaryKey, r => new HeadSummaryRow(
            r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt32(3), r.GetInt32(4), r.GetInt64(5),
            r.GetDouble(6), NullableDouble(r, 7), r.GetDouble(8), r.GetDouble(9), r.GetDouble(10), r.GetInt32(11),
            r.GetDouble(12), NullableDouble(r, 13)), ct).ConfigureAwait(false);
    }

    /// <summary>Computes <c>layer_summary</c> from <c>layer_stats</c> + <c>examples</c> (and writes it unless told not to).</summary>
    public static async Task<IReadOnlyList<LayerSummaryRow>> LayerSummaryAsync(IObjectStore store, AggregateOptions? options = null, CancellationToken ct = default)
    {
        options ??= new AggregateOptions();
        int k = CheckK(options.TopK);
        string sql = SummarySql(TableNames.LayerStats, ["layer", "component"], null, k);
        return await RunAsync(store, options, TableNames.LayerStats, sql, LayerSummaryKey, r => new LayerSummaryRow(
            r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt32(3), r.GetString(4), r.GetInt64(5),
            r.GetDouble(6), NullableDouble(r, 7), r.GetDouble(8), r.GetDouble(9), r.GetDouble(10), r.GetInt32(11),
            r.GetDouble(12)), ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Per model, task, outcome (correct / incorrect / unknown, and 'all') and key (<paramref name="keys"/>) of
    /// <paramref name="table"/>: count, mean, stddev, quantiles 0.1/0.5/0.9 of log_prob_increase, the share of examples
    /// where the key is among the example's top <paramref name="k"/>, and the mean of <paramref name="meanOf"/> if given.
    /// </summary>
    private static string SummarySql(string table, string[] keys, string? meanOf, int k)
    {
        string s(string c) => "s." + c;
        string keyList = string.Join(", ", keys), sKeys = string.Join(", ", keys.Select(s));
        string extra = meanOf is null ? "" : $", s.{meanOf} AS a", extraCol = meanOf is null ? "" : ", a";
        string extraAgg = meanOf is null ? "" : $",\n                   avg(a)::DOUBLE AS mean_{meanOf}";
        return $"""
            WITH joined AS (
              SELECT s.model_fingerprint, e.task,
                     CASE WHEN e.correct IS NULL THEN 'unknown' WHEN e.correct THEN 'correct' ELSE 'incorrect' END AS outcome,
                     {sKeys}, s.log_prob_increase AS v{extra},
                     row_number() OVER (PARTITION BY s.run_id, s.model_fingerprint, s.example_id
                                        ORDER BY s.log_prob_increase DESC, {sKeys}) <= {k} AS in_top
              FROM {table} s JOIN examples e
                ON s.run_id = e.run_id AND s.model_fingerprint = e.model_fingerprint AND s.example_id = e.example_id
            ), split AS (
              SELECT model_fingerprint, task, outcome, {keyList}, v{extraCol}, in_top FROM joined
              UNION ALL
              SELECT model_fingerprint, task, 'all', {keyList}, v{extraCol}, in_top FROM joined
            )
            SELECT model_fingerprint, task, outcome, {keyList},
                   count(*)::BIGINT AS n_examples,
                   avg(v)::DOUBLE AS mean,
                   stddev_samp(v)::DOUBLE AS stddev,
                   quantile_cont(v, 0.1)::DOUBLE AS q10,
                   quantile_cont(v, 0.5)::DOUBLE AS q50,
                   quantile_cont(v, 0.9)::DOUBLE AS q90,
                   {k}::INTEGER AS top_k,
                   avg(in_top::INTEGER)::DOUBLE AS top_k_share{extraAgg}
            FROM split
            GROUP BY model_fingerprint, task, outcome, {keyList}
            ORDER BY model_fingerprint, task, outcome, {keyList}
            """;
    }

    private static int CheckK(int k) => k >= 1 ? k : throw new ArgumentOutOfRangeException(nameof(AggregateOptions.TopK), "TopK must be at least 1");

    private static double? NullableDouble(DuckDBDataReader r, int i) => r.IsDBNull(i) ? null : r.GetDouble(i);

    private static async Task<IReadOnlyList<T>> RunAsync<T>(IObjectStore store, AggregateOptions options, string statsTable, string sql,
        string outputKey, Func<DuckDBDataReader, T> read, CancellationToken ct)
    {
        var committer = new ShardCommitter(store);
        await committer.RepairAsync(null, ct).ConfigureAwait(false);   // publish interrupted commits first
        var manifests = await committer.CommittedManifestsAsync(ct).ConfigureAwait(false);
        var examples = manifests.SelectMany(m => m.Parts.Where(p => p.Table == TableNames.Examples)).Select(p => p.Path).ToList();
        var stats = manifests.SelectMany(m => m.Parts.Where(p => p.Table == statsTable)).Select(p => p.Path).ToList();
        if (examples.Count == 0 || stats.Count == 0)
            return [];

        string scratch = Path.Combine(options.ScratchDir ?? Path.GetTempPath(), "llavamech-agg-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(scratch);
        try
        {
            var examplePaths = await LocalFilesAsync(store, examples, scratch, "examples", ct).ConfigureAwait(false);
            var statPaths = await LocalFilesAsync(store, stats, scratch, statsTable, ct).ConfigureAwait(false);
            string outFile = Path.Combine(scratch, "summary.parquet");

            var rows = new List<T>();
            using (var db = new DuckDBConnection("DataSource=:memory:"))
            {
                await db.OpenAsync(ct).ConfigureAwait(false);
                Exec(db, $"CREATE VIEW examples AS SELECT * FROM read_parquet({SqlList(examplePaths)})");
                Exec(db, $"CREATE VIEW {statsTable} AS SELECT * FROM read_parquet({SqlList(statPaths)})");
                Exec(db, $"CREATE TEMP TABLE summary AS {sql}");
                if (options.Write)
                    Exec(db, $"COPY summary TO {SqlString(outFile)} (FORMAT parquet, COMPRESSION snappy)");
                using var cmd = db.CreateCommand();
                cmd.CommandText = "SELECT * FROM summary";
                using var r = (DuckDBDataReader)await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await r.ReadAsync(ct).ConfigureAwait(false))
                    rows.Add(read(r));
            }
            if (options.Write)
                await store.PutFileAsync(outputKey, outFile, ct).ConfigureAwait(false);
            return rows;
        }
        finally
        {
            try { Directory.Delete(scratch, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>Local paths of the parts: in place for a local store, else downloaded into <paramref name="scratch"/>.</summary>
    private static async Task<List<string>> LocalFilesAsync(IObjectStore store, List<string> keys, string scratch, string name, CancellationToken ct)
    {
        var paths = new string[keys.Count];
        await Parallel.ForEachAsync(Enumerable.Range(0, keys.Count), new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = ct },
            async (i, token) =>
            {
                string? local = store.LocalPath(keys[i]);
                if (local is not null && File.Exists(local))
                {
                    paths[i] = local;
                    return;
                }
                string path = Path.Combine(scratch, $"{name}-{i.ToString(CultureInfo.InvariantCulture)}.parquet");
                if (!await store.DownloadToFileAsync(keys[i], path, token).ConfigureAwait(false))
                    throw new CommitIntegrityException($"committed part '{keys[i]}' is missing", store.Location);
                paths[i] = path;
            }).ConfigureAwait(false);
        return paths.ToList();
    }

    internal static string SqlString(string s) => "'" + s.Replace("'", "''") + "'";

    internal static string SqlList(IEnumerable<string> items) => "[" + string.Join(", ", items.Select(SqlString)) + "]";
}
