using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using LlavaMech.Analysis;
using LlavaMech.Explanation;
using LlavaMech.Model;
using LlavaMech.Runtime;
using static TorchSharp.torch;

namespace LlavaMech.Viewer;

/// <summary>
/// <c>/explain</c> (serve --model): one warm model; an uploaded image and prompt get <c>explain</c>'s analysis
/// (<see cref="Explainer"/>, the explain.json projection), and a head ablation of that input gets <c>intervene</c>'s
/// (<see cref="InterventionRunner"/>). One pass at a time (the model is not shared across threads); uploads live in a
/// private temporary folder, at most <see cref="MaxUploads"/> of them (the oldest go first), and are deleted on dispose.
/// </summary>
public sealed class ExplainService : IDisposable
{
    public const int MaxUploads = 32;
    public const int MaxImageBytes = 8 << 20;
    public const int MaxPromptChars = 4000;

    private readonly LoadedModel _model;
    private readonly ExampleAnalyzer _analyzer;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly string _dir = Directory.CreateTempSubdirectory("llavamech-viewer-explain-").FullName;
    private readonly ConcurrentDictionary<string, Upload> _uploads = new(StringComparer.Ordinal);

    private sealed record Upload(string ImagePath, string Prompt, JsonObject Explained, DateTime At);

    private ExplainService(LoadedModel model)
    {
        _model = model;
        _analyzer = new ExampleAnalyzer(model);
    }

    public string ModelDir { get; private init; } = "";

    public static ExplainService Load(string modelDir)
    {
        var model = LoadedModel.Load(modelDir);
        if (!model.HasVision)
        {
            model.Dispose();
            throw new ArgumentException($"--model {modelDir}: /explain needs a LLaVA model (it has no vision tower)");
        }
        return new ExplainService(model) { ModelDir = modelDir };
    }

    /// <summary>Runs explain on the upload; returns its id and explain.json.</summary>
    public async Task<(string Id, JsonObject Explained)> ExplainAsync(Stream image, string extension, string prompt, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(prompt) || prompt.Length > MaxPromptChars) throw new ArgumentException($"the prompt must have 1 to {MaxPromptChars} characters");
        if (!prompt.Contains("<image>", StringComparison.Ordinal)) throw new ArgumentException("the prompt must contain <image> where the image goes");
        if (extension is not (".png" or ".jpg" or ".jpeg")) throw new ArgumentException("the image must be a PNG or JPEG file");
        string id = Guid.NewGuid().ToString("N");
        string path = Path.Combine(_dir, id + extension);
        await using (var file = File.Create(path))
            await image.CopyToAsync(file, ct).ConfigureAwait(false);
        JsonObject json;
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            using var scope = NewDisposeScope();
            var input = _model.Prepare(prompt, path);
            var explained = Explainer.Run(_analyzer, input, new AnalysisSettings(), null);
            if (explained.Analysis.Statistics.FirstNonFinite() is { } bad) throw new ArgumentException($"non-finite statistic {bad}: the model's pass on this input is not finite");
            json = Explainer.ToJson(_model, explained);
        }
        catch
        {
            File.Delete(path);
            throw;
        }
        finally { _gate.Release(); }
        _uploads[id] = new Upload(path, prompt, json, DateTime.UtcNow);
        foreach (var old in _uploads.OrderByDescending(u => u.Value.At).Skip(MaxUploads).ToList())
            if (_uploads.TryRemove(old.Key, out var gone)) File.Delete(gone.ImagePath);
        return (id, json);
    }

    public JsonObject? Explained(string id) => _uploads.TryGetValue(id, out var u) ? u.Explained : null;

    /// <summary>The stored upload of <paramref name="id"/> (a file this service wrote), null for an unknown id.</summary>
    public string? ImagePath(string id) => _uploads.TryGetValue(id, out var u) ? u.ImagePath : null;

    /// <summary>intervene's zero-ablation of <paramref name="heads"/> ("L.H,..") on an upload; null for an unknown upload.</summary>
    public async Task<InterventionResult?> AblateAsync(string id, string heads, CancellationToken ct)
    {
        if (!_uploads.TryGetValue(id, out var u)) return null;
        var request = InterventionRequest.Parse(o => o == "ablate-heads" ? heads : null);
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            using var scope = NewDisposeScope();
            return InterventionRunner.Run(_model, _model.Prepare(u.Prompt, u.ImagePath), request);
        }
        finally { _gate.Release(); }
    }

    public void Dispose()
    {
        _analyzer.Dispose();
        _model.Dispose();
        _gate.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
