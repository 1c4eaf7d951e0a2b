using LlavaMech.Analysis;
using static TorchSharp.torch;

namespace LlavaMech.Cli.Commands;

/// <summary><c>explain</c>: the paper's tool for one image: which layers, heads, image patches and neurons raise the answer's probability.</summary>
public sealed class ExplainCommand : ICliCommand
{
    /// <summary>The options of the pipeline's analysis settings that one example takes (the same names and defaults as <c>run</c>'s).</summary>
    private static readonly string[] AnalysisOptions = ["top-heads", "top-neurons", "neurons", "screen-k", "lens-top-k"];

    public static CommandLine.OptionSpec[] Specs { get; } =
    [
        new("model", "DIR", "Hugging Face LLaVA checkpoint folder", Required: true),
        new("image", "FILE", "PNG, JPEG or WebP image", Required: true),
        new("prompt", "TEXT", "prompt with one <image>, e.g. \"USER: <image>\\nWhat is the color of the dog?\\nASSISTANT: The color of the dog is\"", Required: true),
        new("target", "TOKEN", "answer token to explain: an id, a vocabulary piece or a one-token word (default: the model's argmax)"),
        new("heatmap-heads", "N", "top heads whose position scores make the log-increase heatmap", "1") { Range = CommandLine.NumericRange.Int(1, 4096) },
        .. SettingsOptions.Specs<AnalysisSettings>(AnalysisOptions),
        new("heads", "K", "the earlier name of --top-heads") { Range = CommandLine.NumericRange.Int(1, 4096) },
        new("lens-layers", "L,L,..", "also apply the logit lens (and its attention/FFN split) to the residual stream at image positions of these layers"),
        new("out", "DIR", "output folder for explain.json and the PNG figures", Required: true),
        new("json", null, "print explain.json to standard output instead of the summary"),
        .. DeviceOptions.Specs,
    ];

    public static string Description { get; } = """
        One hooked forward pass, then the log-probability-increase statistics of Yu & Ananiadou
        (arXiv 2411.10950) for the target token at the last position: every layer's attention and
        FFN increase, every head's increase, per-position scores of the top heads, every FFN
        neuron's increase, the raw-attention baseline over the image and the logit lens of the
        visual tokens. Writes into --out:
          explain.png   input crop | raw attention | log-increase heatmap, overlaid on the image
          layers.png    attention and FFN increase per layer
          heads.png     head increase, layers x heads
          explain.json  all numbers (field list in the README)
        Files are written to a temporary sibling folder and renamed onto --out only when every one
        is written (into an existing --out they replace their namesakes; other files stay), so a
        failed run leaves no partial output and an earlier one untouched. An input whose pass is not finite (NaN or infinity: an fp16
        overflow, a corrupt weight) fails naming the first non-finite statistic. JSON output writes
        any non-finite number as null.
        """;

    public static string Examples { get; } = """
          ./llavamech explain --model tests/fixtures/tiny-llava-mha --image tests/fixtures/tiny-llava-mha/red_circle.png \
              --prompt $'USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is' --out out/explain
          ./llavamech explain ... --target red --heads 5 --json > explain.json
        """;

    public static int Run(CommandLine cl)
    {
        var options = DeviceOptions.Apply(cl);
        var outDir = cl.Require("out");
        var settings = SettingsOptions.Bind<AnalysisSettings>(cl, AnalysisOptions);
        if (cl.Get("heads") is not null) settings = settings with { TopHeads = cl.GetInt("heads") };
        int heatmapHeads = cl.GetInt("heatmap-heads");
        if (heatmapHeads > settings.TopHeads) throw new UsageException($"--heatmap-heads {heatmapHeads} cannot exceed --top-heads {settings.TopHeads}");
        var lensLayers = cl.Get("lens-layers")?.Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(x => int.TryParse(x, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int n) && n >= 0
                ? n : throw new UsageException($"--lens-layers: '{x}' is not a layer number (0 or more)")).ToArray();

        using var model = LoadedModel.Load(cl.Require("model"), options);
        if (!model.HasVision) throw new UsageException("explain needs a LLaVA model; for text-only models use compare-tasks");
        int? target = Runtime.TargetResolver.Resolve(cl.Get("target"), model.Tokenizer, model.Config.Text.VocabSize);
        using var analyzer = new ExampleAnalyzer(model);
        using var scope = NewDisposeScope();
        var input = model.Prepare(cl.Require("prompt"), cl.Require("image"));
        var explained = Explainer.Run(analyzer, input, settings, target, heatmapHeads, lensLayers);
        var json = Explainer.Write(model, explained, outDir, heatmapHeads);
        if (cl.Flag("json")) { Console.WriteLine(Json.Serialize(json)); return 0; }
        PrintSummary(model, explained.Analysis, outDir, heatmapHeads, Math.Min(5, settings.TopNeurons));
        return 0;
    }

    private static void PrintSummary(LoadedModel model, ExampleAnalysis a, string outDir, int heatmapHeads, int topNeurons)
    {
        var s = a.Statistics;
        Console.WriteLine($"target        '{model.TokenText(s.TargetId)}' (id {s.TargetId}, p = {Math.Exp(s.TargetLogProb):0.0000})");
        Console.WriteLine($"next tokens   {string.Join("  ", s.Top5Ids.Select((id, i) => $"'{model.TokenText(id)}' {s.Top5Probs[i]:0.000}"))}");
        Console.WriteLine();
        Console.WriteLine("layer   attention     FFN   (increase of log p(target))");
        for (int l = 0; l < s.LayerAttnIncrease.Length; l++)
            Console.WriteLine($"{l,5}  {SignedNumber.Format(s.LayerAttnIncrease[l]),10}  {SignedNumber.Format(s.LayerFfnIncrease[l]),10}");
        Console.WriteLine();
        Console.WriteLine("top heads     " + string.Join("   ", s.TopHeads.Select(h => $"L{h.Layer}H{h.Head} {SignedNumber.Format(h.Score)}")));
        var neurons = ExplainReport.TopNeurons(s, topNeurons);   // at most the kept ones (the screen stops there)
        if (neurons.Count > 0) Console.WriteLine("top neurons   " + string.Join("   ", neurons.Select(n => $"L{n.Layer}N{n.Neuron} {SignedNumber.Format(n.Score)}")));
        if (ExplainReport.LogIncreaseGrid(a, heatmapHeads) is { } map)
        {
            Console.WriteLine();
            Console.WriteLine($"where on the image (log-increase of the top {heatmapHeads} head(s)): {AsciiGrid.Describe(map.Grid, map.Side)}");
            if (map.Side <= 24) Console.WriteLine(AsciiGrid.Render(map.Grid, map.Side));
        }
        Console.WriteLine($"wrote {Path.Combine(outDir, "explain.png")}, layers.png, heads.png, explain.json  (forward {a.ForwardMs:0} ms, statistics {a.StatisticsMs:0} ms)");
    }
}
