using System.Data.Common;
using System.Text.Json;
using DuckDB.NET.Data;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Pipeline;
using LlavaMech.Storage;

namespace LlavaMech.Viewer;

/// <summary>
/// A run's output read in place: its committed parts (those its commit manifests list; a running run gains parts as
/// shards commit, seen at most <see cref="RefreshInterval"/> later) as DuckDB views named after the tables, its
/// <c>_pipeline/run.json</c>, and the images its manifest references. Local parts are read where they lie; parts of a
/// blob location are downloaded once into a scratch folder. Read-only: nothing is written to the run.
/// </summary>
public sealed class RunSource : IAsyncDisposable
{
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(5);

    /// <summary>The tables the viewer reads, each a view of the same name once it has rows.</summary>
    public static readonly string[] Tables =
    [
        TableNames.Examples, TableNames.LayerStats, TableNames.HeadStats, TableNames.PositionStats, TableNames.LogitLens,
        TableNames.NeuronStats, TableNames.CausalEffects, TableNames.KnockoutEffects, TableNames.Rejects,
    ];

    private readonly IObjectStore _store;
    private readonly ShardCommitter _committer;
    private readonly DuckDBConnection _db;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly string _scratch;
    private readonly Dictionary<string, string> _localOf = new(StringComparer.Ordinal);
    private readonly HashSet<string> _tablesWithRows = new(StringComparer.Ordinal);
    // For each local examples part: the local parts of the same shard, by table (an example's rows all lie in its shard).
    private Dictionary<string, Dictionary<string, string>> _shardPartsByExamplesFile = new(StringComparer.Ordinal);
    private DateTime _refreshedAt = DateTime.MinValue;
    private int _shards = -1;
    private IReadOnlyDictionary<string, ManifestExample>? _manifest;

    private RunSource(string location, IObjectStore store)
    {
        Location = location;
        _store = store;
        _committer = new ShardCommitter(store);
        _scratch = Path.Combine(Path.GetTempPath(), "llavamech-viewer-" + Guid.NewGuid().ToString("N"));
        _db = new DuckDBConnection("DataSource=:memory:");
        _db.Open();
        // Parquet footers are read once per file, not per query (the example page runs several point queries over every part).
        using var cmd = _db.CreateCommand();
        cmd.CommandText = "SET enable_object_cache = true";
        try { cmd.ExecuteNonQuery(); } catch (DuckDBException) { }
    }

    /// <summary>The location as given (a folder, az://container/prefix or an https blob URL).</summary>
    public string Location { get; }

    public string RunId { get; private set; } = "";
    public string ModelFingerprint { get; private set; } = "";
    public int CommittedShards => Math.Max(_shards, 0);
    public long RejectRows { get; private set; }

    /// <summary><c>_pipeline/run.json</c>, when the run has one.</summary>
    public RunRecord? Record { get; private set; }

    /// <summary><c>summary.json</c> of a finished run (null while it runs).</summary>
    public JsonDocument? Summary { get; private set; }

    /// <summary>Changes whenever the set of committed parts does (cache key of derived views).</summary>
    public int Version { get; private set; }

    public static async Task<RunSource> OpenAsync(string location, CancellationToken ct = default)
    {
        IObjectStore store;
        try { store = OutputLocation.Parse(location).OpenStore(createFolder: false); }
        catch (DirectoryNotFoundException e) { throw new ArgumentException($"run {e.Message}", e); }
        var run = new RunSource(location, store);
        try
        {
            await run.RefreshAsync(force: true, ct).ConfigureAwait(false);
            if (run._shards == 0)
                throw new ArgumentException($"{store.Location} holds no committed shard (yet): not the output of a pipeline run (run, reanalyze, submit)");
            return run;
        }
        catch
        {
            await run.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public bool Has(string table) => _tablesWithRows.Contains(table);

    /// <summary>
    /// The SQL source of <paramref name="table"/>'s rows of the shard whose examples part is <paramref name="examplesFile"/>
    /// (a <c>filename</c> of <c>examples_by_file</c>): that shard's part only, so a point query reads one file, not every part.
    /// Null when the shard has no rows of the table. Call inside <see cref="QueryAsync{T}"/>.
    /// </summary>
    public string? ShardSource(string examplesFile, string table) =>
        _shardPartsByExamplesFile.TryGetValue(examplesFile, out var parts) && parts.TryGetValue(table, out var file)
            ? $"read_parquet({Sql.Literal(file)})"
            : null;

    /// <summary>Runs <paramref name="body"/> on the run's DuckDB connection (one query at a time) over fresh views.</summary>
    public async Task<T> QueryAsync<T>(Func<DuckDBConnection, T> body, CancellationToken ct = default)
    {
        await RefreshAsync(force: false, ct).ConfigureAwait(false);
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try { return body(_db); }
        finally { _gate.Release(); }
    }

    /// <summary>The manifest example of <paramref name="exampleId"/> (the image the run analysed), null when the manifest does not list it.</summary>
    public ManifestExample? ManifestEntry(string exampleId)
    {
        if (_manifest is null)
        {
            var map = new Dictionary<string, ManifestExample>(StringComparer.Ordinal);
            try
            {
                if (Record is { } rec && File.Exists(rec.ManifestPath))
                    foreach (var e in ManifestReader.Read(rec.ManifestPath, new ManifestLimits(rec.MaxLineBytes)).Examples)
                        map.TryAdd(e.Id, e);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or ArgumentException) { }
            _manifest = map;
        }
        return _manifest.GetValueOrDefault(exampleId);
    }

    private async Task RefreshAsync(bool force, CancellationToken ct)
    {
        if (!force && DateTime.UtcNow - _refreshedAt < RefreshInterval) return;
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (!force && DateTime.UtcNow - _refreshedAt < RefreshInterval) return;
            var manifests = await _committer.CommittedManifestsAsync(ct).ConfigureAwait(false);
            _refreshedAt = DateTime.UtcNow;
            if (manifests.Count == _shards) return;
            if (manifests.Select(m => m.ModelFingerprint).Distinct().Count() > 1)
                throw new InvalidOperationException($"{_store.Location} holds shards of several models");
            if (manifests.Count > 0) (RunId, ModelFingerprint) = (manifests[0].RunId, manifests[0].ModelFingerprint);
            RejectRows = manifests.Sum(m => m.RowsOf(TableNames.Rejects));
            if (Record is null && await _store.GetBytesAsync(RunRecord.Key, ct).ConfigureAwait(false) is { } rec)
                Record = RunRecord.Parse(rec);
            if (await _store.GetBytesAsync(Finalizer.SummaryKey, ct).ConfigureAwait(false) is { } sum)
            {
                Summary?.Dispose();
                Summary = JsonDocument.Parse(sum);
            }
            foreach (var table in Tables)
            {
                var keys = manifests.SelectMany(m => m.Parts.Where(p => p.Table == table && p.Rows > 0)).Select(p => p.Path).ToList();
                if (keys.Count == 0) continue;
                var missing = keys.Where(k => !_localOf.ContainsKey(k)).ToList();
                if (missing.Count > 0)
                {
                    string dir = Path.Combine(_scratch, table, Guid.NewGuid().ToString("N"));
                    Directory.CreateDirectory(dir);
                    var paths = await Finalizer.LocalPartsAsync(_store, missing, dir, ct).ConfigureAwait(false);
                    for (int i = 0; i < missing.Count; i++) _localOf[missing[i]] = paths[i];
                }
                using var cmd = _db.CreateCommand();
                cmd.CommandText = $"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet([{string.Join(", ", keys.Select(k => Sql.Literal(_localOf[k])))}])";
                if (table == TableNames.Examples)   // also a view that names each row's file, to find an example's shard
                    cmd.CommandText += $"; CREATE OR REPLACE VIEW examples_by_file AS SELECT * FROM read_parquet([{string.Join(", ", keys.Select(k => Sql.Literal(_localOf[k])))}], filename = true)";
                cmd.ExecuteNonQuery();
                _tablesWithRows.Add(table);
            }
            _shardPartsByExamplesFile = manifests
                .Where(m => m.Parts.Any(p => p.Table == TableNames.Examples && p.Rows > 0))
                .ToDictionary(m => _localOf[m.Parts.First(p => p.Table == TableNames.Examples && p.Rows > 0).Path],
                    m => m.Parts.Where(p => p.Rows > 0 && _localOf.ContainsKey(p.Path)).ToDictionary(p => p.Table, p => _localOf[p.Path], StringComparer.Ordinal),
                    StringComparer.Ordinal);
            _shards = manifests.Count;
            Version++;
        }
        finally { _gate.Release(); }
    }

    public async ValueTask DisposeAsync()
    {
        await _db.DisposeAsync().ConfigureAwait(false);
        Summary?.Dispose();
        _gate.Dispose();
        try { if (Directory.Exists(_scratch)) Directory.Delete(_scratch, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Small helpers for the viewer's DuckDB queries: literals, named parameters, rows.</summary>
internal static class Sql
{
    public static string Literal(string s) => "'" + s.Replace("'", "''") + "'";

    public static DbCommand Command(DuckDBConnection db, string sql, params (string Name, object Value)[] args)
    {
        var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in args) cmd.Parameters.Add(new DuckDBParameter(name, value));
        return cmd;
    }

    public static List<object?[]> Rows(DuckDBConnection db, string sql, params (string Name, object Value)[] args) => DuckDbSql.Rows(db, sql, args);
}
