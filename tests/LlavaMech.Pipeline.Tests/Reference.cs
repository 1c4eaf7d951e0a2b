using LlavaMech.Analysis;
using LlavaMech.Explanation;
using LlavaMech.Model;
using static TorchSharp.torch;

namespace LlavaMech.Pipeline.Tests;

/// <summary>Single-process statistics of the same examples: <see cref="ExampleAnalyzer"/> on one model, in this thread.</summary>
public static class Reference
{
    private static readonly object Gate = new();
    private static bool _threadsSet;

    /// <summary>
    /// One libtorch intra-op thread for the whole test process, set before any parallel work: three in-process silos
    /// plus the reference share two cores, and the same setting everywhere keeps reductions in the same order.
    /// </summary>
    public static void UseOneTorchThread()
    {
        lock (Gate)
        {
            if (_threadsSet) return;
            set_num_threads(1);
            _threadsSet = true;
        }
    }

    /// <summary>The options the pipeline's defaults amount to (argmax target, 3 top heads, auto neurons, lens top-5).</summary>
    public static StatisticsOptions DefaultOptions => new()
    {
        TopKHeads = 3,
        Neurons = new NeuronOptions(NeuronRoute.Auto, 1024),
        LensTopK = 5,
    };

    public static ExampleStatistics[] Analyze(string modelDir, IEnumerable<(string Prompt, string? Image)> inputs, StatisticsOptions? options = null)
    {
        UseOneTorchThread();
        using var model = LoadedModel.Load(modelDir);
        using var analyzer = new ExampleAnalyzer(model);
        var result = new List<ExampleStatistics>();
        foreach (var (prompt, image) in inputs)
        {
            using var scope = NewDisposeScope();
            result.Add(analyzer.Analyze(model.Prepare(prompt, image), options ?? DefaultOptions).Statistics);
        }
        return result.ToArray();
    }
}
