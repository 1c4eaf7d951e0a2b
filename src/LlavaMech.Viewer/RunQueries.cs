using System.Globalization;
using DuckDB.NET.Data;
using LlavaMech.Storage;

namespace LlavaMech.Viewer;

public sealed record TaskCounts(string Task, long Examples, long WithExpected, long Correct)
{
    public double? Accuracy => WithExpected == 0 ? null : (double)Correct / WithExpected;
}

/// <summary>A head's mean over a task's examples (head_stats joined to examples).</summary>
public sealed record HeadMean(string Task, int Layer, int Head, long NExamples, double MeanLogProbIncrease, double? MeanAttnToImage);

/// <summary>A layer block's mean over a task's examples (layer_stats joined to examples).</summary>
public sealed record LayerMean(string Task, int Layer, string Component, long NExamples, double MeanLogProbIncrease);

/// <summary>What the front page shows, recomputed when the run's committed parts change.</summary>
public sealed record RunOverview(
    string RunId, string ModelFingerprint, string? Model, string? Manifest, bool Finished, int CommittedShards,
    long Examples, long Rejects, long WithExpected, long Correct, IReadOnlyList<TaskCounts> Tasks,
    IReadOnlyList<HeadMean> Heads, IReadOnlyList<LayerMean> Layers, IReadOnlyList<CausalMean> Causal)
{
    public double? Accuracy => WithExpected == 0 ? null : (double)Correct / WithExpected;

    public IEnumerable<HeadMean> TopHeads(string task, int n) =>
        Heads.Where(h => h.Task == task).OrderByDescending(h => h.MeanLogProbIncrease).ThenBy(h => h.Layer).ThenBy(h => h.Head).Take(n);
}

/// <summary>Mean causal effect of a head selection per task (causal_effects), when the run has them.</summary>
public sealed record CausalMean(string Task, string Selection, int K, long N, double MeanDelta, double FlipRate);

/// <summary>One row of the examples list (and of <c>/api/examples</c>).</summary>
public sealed record ExampleListItem(string ExampleId, string Task, string Prompt, string TargetToken, double TargetProb, string? Expected, bool? Correct,
    int SeqLen, int NumImageTokens);

public sealed record ExamplePage(long Total, int Limit, int Offset, IReadOnlyList<ExampleListItem> Items);

public sealed record LayerValue(int Layer, string Component, double LogProbIncrease);

public sealed record HeadValue(int Layer, int Head, double LogProbIncrease, double? AttnToImage);

/// <param name="ImagePart">the image part of an image position (<c>base</c>; LLaVA-NeXT also <c>grid</c>, <c>newline</c>); null for text.</param>
public sealed record PositionValue(int Layer, int Head, int Position, bool IsImage, int? PatchRow, int? PatchCol, double LogProbIncrease, double AttnWeight,
    string? ImagePart = null);

public sealed record LensValue(int Position, int Rank, int TokenId, string Token);

public sealed record NeuronValue(int Layer, int Neuron, double LogProbIncrease, double Coefficient);

public sealed record CausalValue(string Selection, int K, string Heads, double CleanLogprob, double EditLogprob, double Delta, bool Flipped);

/// <summary>Everything the tables hold about one example (<c>/api/examples/{id}</c>).</summary>
public sealed record ExampleDetail(ExampleListItem Example, int TargetId, string Metadata, bool HasImage,
    IReadOnlyList<LayerValue> Layers, IReadOnlyList<HeadValue> Heads, IReadOnlyList<PositionValue> Positions,
    IReadOnlyList<LensValue> LogitLens, IReadOnlyList<NeuronValue> Neurons, IReadOnlyList<CausalValue> Causal);

/// <summary>Filters of the examples list; every size is capped.</summary>
public sealed record ExampleFilter(string? Task = null, bool? Correct = null, string? Target = null, string? Text = null, int Limit = 50, int Offset = 0)
{
    public const int MaxLimit = 500;
    public const int MaxOffset = 10_000_000;
    public const int MaxText = 200;
}

/// <summary>The viewer's reads: DuckDB over the views of a <see cref="RunSource"/>.</summary>
public sealed class RunQueries(RunSource run)
{
    public const int LensRanks = 5;
    private RunOverview? _overview;
    private int _overviewVersion = -1;

    public RunSource Run => run;

    public async Task<RunOverview> OverviewAsync(CancellationToken ct = default) => await run.QueryAsync(db =>
    {
        if (_overview is { } o && _overviewVersion == run.Version) return o;
        var tasks = Sql.Rows(db, """
            SELECT task, count(*)::BIGINT, count(correct)::BIGINT, coalesce(sum(CASE WHEN correct THEN 1 ELSE 0 END), 0)::BIGINT
            FROM examples GROUP BY task ORDER BY task
            """).Select(r => new TaskCounts((string)r[0]!, Convert.ToInt64(r[1]), Convert.ToInt64(r[2]), Convert.ToInt64(r[3]))).ToList();
        var heads = !run.Has(TableNames.HeadStats) ? [] : Sql.Rows(db, """
            SELECT e.task, h.layer, h.head, count(*)::BIGINT, avg(h.log_prob_increase), avg(h.attn_to_image)
            FROM head_stats h JOIN (SELECT DISTINCT example_id, task FROM examples) e USING (example_id)
            GROUP BY e.task, h.layer, h.head ORDER BY e.task, h.layer, h.head
            """).Select(r => new HeadMean((string)r[0]!, Convert.ToInt32(r[1]), Convert.ToInt32(r[2]), Convert.ToInt64(r[3]), Convert.ToDouble(r[4]),
            r[5] is null ? null : Convert.ToDouble(r[5]))).ToList();
        var layers = !run.Has(TableNames.LayerStats) ? [] : Sql.Rows(db, """
            SELECT e.task, l.layer, l.component, count(*)::BIGINT, avg(l.log_prob_increase)
            FROM layer_stats l JOIN (SELECT DISTINCT example_id, task FROM examples) e USING (example_id)
            GROUP BY e.task, l.layer, l.component ORDER BY e.task, l.layer, l.component
            """).Select(r => new LayerMean((string)r[0]!, Convert.ToInt32(r[1]), (string)r[2]!, Convert.ToInt64(r[3]), Convert.ToDouble(r[4]))).ToList();
        var causal = !run.Has(TableNames.CausalEffects) ? [] : Sql.Rows(db, """
            SELECT task, selection, k, count(*)::BIGINT, avg(delta), avg(CASE WHEN flipped THEN 1.0 ELSE 0.0 END)
            FROM causal_effects GROUP BY task, selection, k ORDER BY task, selection, k
            """).Select(r => new CausalMean((string)r[0]!, (string)r[1]!, Convert.ToInt32(r[2]), Convert.ToInt64(r[3]), Convert.ToDouble(r[4]), Convert.ToDouble(r[5]))).ToList();
        _overview = new RunOverview(run.RunId, run.ModelFingerprint, run.Record?.ModelDir, run.Record?.ManifestPath, run.Summary is not null, run.CommittedShards,
            tasks.Sum(t => t.Examples), run.RejectRows, tasks.Sum(t => t.WithExpected), tasks.Sum(t => t.Correct), tasks, heads, layers, causal);
        _overviewVersion = run.Version;
        return _overview;
    }, ct).ConfigureAwait(false);

    public Task<ExamplePage> ExamplesAsync(ExampleFilter f, CancellationToken ct = default) => run.QueryAsync(db =>
    {
        var where = new List<string>();
        var args = new List<(string, object)>();
        if (f.Task is { } task) { where.Add("task = $task"); args.Add(("task", task)); }
        if (f.Correct is { } correct) where.Add(correct ? "correct" : "NOT correct");
        if (f.Target is { } target) { where.Add("trim(target_token) = trim($target)"); args.Add(("target", target)); }
        if (f.Text is { } text)
        {
            where.Add("(contains(lower(prompt), lower($text)) OR contains(lower(example_id), lower($text)))");
            args.Add(("text", text));
        }
        string filter = where.Count == 0 ? "" : "WHERE " + string.Join(" AND ", where);
        long total = Convert.ToInt64(Sql.Rows(db, $"SELECT count(*) FROM examples {filter}", args.ToArray())[0][0]);
        var items = Sql.Rows(db, $"""
            SELECT example_id, task, prompt, target_token, target_prob, expected, correct, seq_len, num_image_tokens
            FROM examples {filter} ORDER BY example_id LIMIT {f.Limit.ToString(CultureInfo.InvariantCulture)} OFFSET {f.Offset.ToString(CultureInfo.InvariantCulture)}
            """, args.ToArray()).Select(ListItem).ToList();
        return new ExamplePage(total, f.Limit, f.Offset, items);
    }, ct);

    public Task<ExampleDetail?> ExampleAsync(string id, CancellationToken ct = default) => run.QueryAsync<ExampleDetail?>(db =>
    {
        var p = ("id", (object)id);
        var rows = Sql.Rows(db, """
            SELECT example_id, task, prompt, target_token, target_prob, expected, correct, seq_len, num_image_tokens, target_id, metadata, filename
            FROM examples_by_file WHERE example_id = $id LIMIT 1
            """, p);
        if (rows.Count == 0) return null;
        var ex = ListItem(rows[0]);
        string file = (string)rows[0][11]!;
        // The example's rows of each table: from its shard's part only (the table name in the SQL stands for that part).
        List<T> Table<T>(string table, string sql, Func<object?[], T> map) =>
            run.ShardSource(file, table) is { } source
                ? Sql.Rows(db, sql.Replace($"FROM {table} ", $"FROM {source} ", StringComparison.Ordinal), p).Select(map).ToList()
                : [];
        var layers = Table(TableNames.LayerStats, "SELECT layer, component, log_prob_increase FROM layer_stats WHERE example_id = $id ORDER BY layer, component",
            r => new LayerValue(I(r[0]), (string)r[1]!, D(r[2])));
        var heads = Table(TableNames.HeadStats, "SELECT layer, head, log_prob_increase, attn_to_image FROM head_stats WHERE example_id = $id ORDER BY layer, head",
            r => new HeadValue(I(r[0]), I(r[1]), D(r[2]), r[3] is null ? null : D(r[3])));
        var positions = Table(TableNames.PositionStats, """
            SELECT layer, head, position, is_image, patch_row, patch_col, log_prob_increase, attn_weight, image_part
            FROM position_stats WHERE example_id = $id ORDER BY layer, head, position
            """, r => new PositionValue(I(r[0]), I(r[1]), I(r[2]), (bool)r[3]!, r[4] is null ? null : I(r[4]), r[5] is null ? null : I(r[5]), D(r[6]), D(r[7]), (string?)r[8]));
        var lens = Table(TableNames.LogitLens, $"SELECT position, rank, token_id, token FROM logit_lens WHERE example_id = $id AND rank < {LensRanks} ORDER BY position, rank",
            r => new LensValue(I(r[0]), I(r[1]), I(r[2]), (string)r[3]!));
        var neurons = Table(TableNames.NeuronStats, "SELECT layer, neuron, log_prob_increase, coefficient FROM neuron_stats WHERE example_id = $id ORDER BY log_prob_increase DESC LIMIT 20",
            r => new NeuronValue(I(r[0]), I(r[1]), D(r[2]), D(r[3])));
        var causal = Table(TableNames.CausalEffects, "SELECT selection, k, heads, clean_logprob, edit_logprob, delta, flipped FROM causal_effects WHERE example_id = $id ORDER BY selection",
            r => new CausalValue((string)r[0]!, I(r[1]), (string)r[2]!, D(r[3]), D(r[4]), D(r[5]), (bool)r[6]!));
        return new ExampleDetail(ex, I(rows[0][9]), (string)rows[0][10]!, run.ManifestEntry(id)?.ImagePath is not null, layers, heads, positions, lens, neurons, causal);
    }, ct);

    public async Task<IReadOnlyList<HeadMean>> HeadsAsync(string? task, CancellationToken ct = default)
    {
        var o = await OverviewAsync(ct).ConfigureAwait(false);
        return task is null ? o.Heads : o.Heads.Where(h => h.Task == task).ToList();
    }

    private static ExampleListItem ListItem(object?[] r) => new((string)r[0]!, (string)r[1]!, (string)r[2]!, (string)r[3]!, D(r[4]),
        (string?)r[5], r[6] is null ? null : (bool)r[6]!, I(r[7]), I(r[8]));

    private static int I(object? v) => Convert.ToInt32(v, CultureInfo.InvariantCulture);
    private static double D(object? v) => Convert.ToDouble(v, CultureInfo.InvariantCulture);
}
