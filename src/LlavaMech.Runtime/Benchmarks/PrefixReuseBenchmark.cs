using System.Diagnostics;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Explanation;
using LlavaMech.Model;

namespace LlavaMech.Runtime.Benchmarks;

/// <summary>
/// <c>bench --questions</c>: examples/s of the pipeline's analysis (<see cref="PipelineAnalyzer"/>: hooked pass, every
/// statistic, the table rows) with <c>--prefix-reuse</c> on and off, for Q questions per image, with the peak resident
/// memory of each; and the cost model that predicts the ratio from three measured parts: a full example (t_full), the
/// shared prefix pass (t_prefix: vision tower and decoder over the prefix) and one question after it (t_after), so that
/// Q questions cost Q t_full without reuse and t_prefix + Q t_after with it. Each Q runs twice on the same analyzers: on
/// fresh readout directions ("cold") and on further images after them ("warm", a worker's steady state).
/// </summary>
public sealed class PrefixReuseBenchmark
{
    public Dictionary<string, object?> Figures { get; } = new();
    public List<string> Lines { get; } = new();

    /// <param name="questions">questions per image, e.g. 1, 2, 5, 10.</param>
    /// <param name="images">images per measurement (each asked Q questions).</param>
    /// <param name="repeats">timings of each part of the cost model (the median is used).</param>
    public void Run(LoadedModel model, IReadOnlyList<int> questions, int images, AnalysisSettings settings, Action<string> log, int repeats = 1)
    {
        if (!model.HasVision) throw new InvalidOptionException("bench --questions needs a model with a vision tower");
        const int questionTokens = 18;
        var c = model.Config;
        var image = ForwardBenchmark.RandomImage(model, 3);
        int imageTokens = model.DecoderFamily.ImageTokens(c, image), prefixText = 5;
        var rng = new Random(0);
        long Token() => rng.Next(3, Math.Min(c.Text.VocabSize, (int)Math.Min(int.MaxValue, c.ImageTokenId)));
        var prefix = new long[prefixText + imageTokens + 1];
        for (int i = 0; i < prefix.Length; i++) prefix[i] = i >= prefixText && i < prefixText + imageTokens ? c.ImageTokenId : Token();
        prefix[0] = c.Text.BosTokenId;
        var layout = model.DecoderFamily.ImageLayout(c, prefixText, image);
        // Image i, question j: the shared prefix, then question tokens of its own.
        (ManifestExample Work, ModelInput Input) Example(int i, int j)
        {
            var ids = prefix.Concat(Enumerable.Range(0, questionTokens).Select(_ => Token())).ToArray();
            string path = $"bench-image-{i}";
            return (new ManifestExample($"i{i}-q{j}", "vqa", path, path, "(random ids)", null, null, "{}", i * 100 + j + 1),
                new ModelInput(ids, image.PixelValues, layout, image, "(random ids)", path));
        }
        Figures["prefix_tokens"] = prefix.Length;
        Figures["question_tokens"] = questionTokens;
        Figures["image_tokens"] = imageTokens;

        ExampleOutcome[] Analyze(PipelineAnalyzer analyzer, List<(ManifestExample Work, ModelInput Input)> batch, AnalysisSettings s)
        {
            var outcomes = analyzer.RunPrepared(batch.Select(b => b.Work).ToList(), batch.Select(b => b.Input).ToList(), s);
            if (outcomes.FirstOrDefault(o => o.Rejected) is { } bad) throw new InvalidOperationException($"benchmark example {bad.Work.Id} rejected: {bad.RejectReason}");
            return outcomes;
        }
        var off = settings with { PrefixReuse = PrefixReuse.Off };
        var on = settings with { PrefixReuse = PrefixReuse.On };

        // The parts of the cost model, on one image: a full example, the prefix pass, a question after it (each after a warm-up).
        log("warm-up and the cost model's parts...");
        using (var warm = new PipelineAnalyzer(model)) Analyze(warm, [Example(0, 0), Example(0, 1)], on);
        double Median(Action part)
        {
            var ms = new List<double>();
            for (int r = 0; r < Math.Max(1, repeats); r++) { var sw = Stopwatch.StartNew(); part(); ms.Add(sw.Elapsed.TotalMilliseconds); }
            ms.Sort();
            return ms[ms.Count / 2];
        }
        double tFull = Median(() => { using var full = new PipelineAnalyzer(model); Analyze(full, [Example(0, 0)], off); });
        using var analyzer0 = new ExampleAnalyzer(model);
        var first = Example(0, 0).Input;
        double tPrefix = Median(() => analyzer0.Prefix(first, prefix.Length).Dispose());
        double tVision = Median(() =>
        {
            using var tower = TorchSharp.torch.NewDisposeScope();
            var (ids, pixels) = model.ToTensors(first);
            model.Embed(ids, pixels, null, [first.ImageLayout]);
        });
        Figures["full_example_ms"] = Math.Round(tFull, 1);
        Figures["prefix_pass_ms"] = Math.Round(tPrefix, 1);
        Figures["vision_tower_ms"] = Math.Round(tVision, 1);
        Lines.Add($"tokens            {prefix.Length} shared prefix ({imageTokens} image), {questionTokens} per question");
        Lines.Add($"full example      {tFull,10:0.0} ms  (median of {Math.Max(1, repeats)}; vision tower {tVision:0.0} ms = {tVision / tFull:P0}; prefix pass {tPrefix:0.0} ms = {tPrefix / tFull:P0})");

        var rows = new List<Dictionary<string, object?>>();
        double? tAfter = null;
        foreach (int q in questions)
        {
            // Two rounds on the same two analyzers: "cold" (fresh readout directions, as the first images a worker sees) and
            // "warm" (other images after those, the steady state of a worker deep in a dataset: the model's head and neuron
            // directions that earlier questions needed are kept, docs/METHOD.md "Prefix reuse").
            using var aOff = new PipelineAnalyzer(model);
            using var aOn = new PipelineAnalyzer(model);
            foreach (var (round, firstImage) in new[] { ("cold", 0), ("warm", images) })
            {
                var batch = Enumerable.Range(firstImage, images).SelectMany(i => Enumerable.Range(0, q).Select(j => Example(i, j))).ToList();
                log($"{q} question(s) per image, {round} readout directions: {batch.Count} examples without and with reuse...");
                var (msOff, peakOff) = Timed(() => Analyze(aOff, batch, off));
                var (passes0, hits0, misses0) = (aOn.PrefixPasses, aOn.Directions.Hits, aOn.Directions.Misses);
                var phases0 = new Dictionary<string, double>(aOn.PhaseMs);
                var (msOn, peakOn) = Timed(() => Analyze(aOn, batch, on));
                var (passes, hits, misses) = (aOn.PrefixPasses - passes0, aOn.Directions.Hits - hits0, aOn.Directions.Misses - misses0);
                double perQuestion = (msOn / images - (q > 1 ? tPrefix : 0)) / q;
                if (q > 1 && round == "cold") tAfter = tAfter is null ? perQuestion : Math.Min(tAfter.Value, perQuestion);
                double eOff = batch.Count / (msOff / 1000), eOn = batch.Count / (msOn / 1000);
                // Where a question's time goes with reuse on (the prefix passes aside): its own pass, each statistic, the rows.
                var perExample = aOn.PhaseMs.Select(kv => (kv.Key, Ms: kv.Value - phases0.GetValueOrDefault(kv.Key))).OrderByDescending(kv => kv.Ms)
                    .ToDictionary(kv => kv.Key, kv => Math.Round(kv.Ms / batch.Count, 1));
                rows.Add(new()
                {
                    ["questions_per_image"] = q, ["readout_directions"] = round, ["examples"] = batch.Count, ["prefix_passes"] = passes,
                    ["readout_direction_hits"] = hits, ["readout_direction_misses"] = misses,
                    ["examples_per_s_off"] = Math.Round(eOff, 3), ["examples_per_s_on"] = Math.Round(eOn, 3), ["speedup"] = Math.Round(eOn / eOff, 2),
                    ["peak_rss_off_mib"] = peakOff >> 20, ["peak_rss_on_mib"] = peakOn >> 20, ["phase_ms_per_example_on"] = perExample,
                });
                Lines.Add($"{q,2} question(s)/image, {round}  off {eOff,8:0.000} ex/s  on {eOn,8:0.000} ex/s  {eOn / eOff,5:0.00}x  ({batch.Count} examples, {passes} prefix passes; readout directions {hits} reused, {misses} computed; peak RSS {ResourceUsage.Mib(peakOff)} off, {ResourceUsage.Mib(peakOn)} on)");
                Lines.Add($"{q,2} question(s)/image, {round}  on, ms per question: " + string.Join(", ", perExample.Select(kv => $"{kv.Key} {kv.Value:0.0}")));
            }
        }
        Figures["runs"] = rows;
        if (tAfter is { } ta)
        {
            Figures["after_prefix_ms"] = Math.Round(ta, 1);
            Lines.Add($"cost model        Q t_full / (t_prefix + Q t_after) with t_after = {ta:0.0} ms: " +
                string.Join(", ", questions.Select(q => $"{q}: {(q == 1 ? 1 : q * tFull / (tPrefix + q * ta)):0.00}x")) +
                $" (limit t_full / t_after = {tFull / ta:0.0}x)");
            Figures["predicted_speedup"] = questions.ToDictionary(q => q.ToString(), q => Math.Round(q == 1 ? 1 : q * tFull / (tPrefix + q * ta), 2));
        }
    }

    /// <summary>"1,2,5,10" as questions per image; an <see cref="ArgumentException"/> names the option otherwise.</summary>
    public static int[] ParseQuestions(string text) => text.Split(',').Select(q => int.TryParse(q.Trim(), out int n) && n >= 1 && n <= 10_000 ? n
        : throw new ArgumentException($"--questions {text}: give counts from 1 to 10000 separated by commas, e.g. 1,2,5,10")).ToArray();

    /// <summary>Wall milliseconds of <paramref name="work"/> and the highest resident memory sampled while it ran.</summary>
    private static (double Ms, long PeakRss) Timed(Action work)
    {
        long peak = ResourceUsage.ResidentBytes();
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                peak = Math.Max(peak, ResourceUsage.ResidentBytes());
                try { await Task.Delay(20, stop.Token); } catch (TaskCanceledException) { }
            }
        });
        var sw = Stopwatch.StartNew();
        work();
        double ms = sw.Elapsed.TotalMilliseconds;
        stop.Cancel();
        sampler.Wait();
        return (ms, Math.Max(peak, ResourceUsage.ResidentBytes()));
    }
}
