namespace LlavaMech.Cli.Commands;

/// <summary>
/// <c>reanalyze</c>: the nightly run of a model version (run id from the model fingerprint, resumes what is already
/// computed for it), and <c>diff</c>: which heads and layers changed importance between two runs.
/// </summary>
public static class ReanalysisCommands
{
    public static readonly CommandLine.OptionSpec[] ReanalyzeSpecs =
    [
        new("model", "DIR", "checkpoint folder of the model version to analyse", Required: true),
        new("dataset", "MANIFEST", "manifest.jsonl; the same for every version, so their runs can be compared", Required: true),
        new("out", "LOCATION", "the root of the runs: a folder, az://container/prefix or an https blob URL; each model version's run goes to <out>/fp-<fingerprint>", Required: true),
        .. PipelineCommands.JobOptionSpecs,
        new("diff-out", "DIR", "when the root holds a completed run of another model version, write the diff against the latest one here"),
        .. PipelineCommands.EmbeddedSiloSpecs,
    ];

    public const string ReanalyzeDescription = """
        The nightly reanalysis of a model version. The model's fingerprint (SHA-256 of every byte
        of config.json, the tokenizer and image processor files and the weights; cached in
        <model>/.llavamech-fingerprint.json) names the run: fp-<16 hex digits>, written to
        <out>/fp-<...>. A new model version therefore starts a new run, and the same version run
        again resumes its run: the shards already committed for that fingerprint are skipped and
        only what is missing is computed (nothing at all when the run is complete; the summaries
        are refreshed). The job runs on an in-process silo as ./llavamech run does; the tables,
        summaries and figures are those of run.

        <out>/_runs/<run id>.json indexes the runs of the root (model, fingerprint, state). At the
        end the latest completed run of another model version is named with the diff command that
        compares the two; with --diff-out that diff is written right away.
        """;

    public const string ReanalyzeExamples = """
          ./llavamech reanalyze --model /models/llava-v2 --dataset eval/manifest.jsonl --out az://nightly/eval --diff-out reports/$(date +%F)
          ./llavamech reanalyze --model tests/fixtures/tiny-llava-mha --dataset datasets/shapes-colors-mini/manifest.jsonl --out out/nightly
        """;

    public static int Reanalyze(CommandLine cl)
    {
        TorchRuntime.UseLibTorchFrom(cl.Get("libtorch"));
        string root = cl.Require("out");
        try { root = OutputLocation.Normalize(root); }
        catch (ArgumentException e) { throw new UsageException($"--out: {e.Message}"); }
        string model = Path.GetFullPath(cl.Require("model"));
        if (!Directory.Exists(model)) throw new UsageException($"--model: '{model}' does not exist");

        // The spec with a placeholder run id and output; the plan replaces both with the fingerprint's.
        var template = PipelineCommands.ReadJob(cl, "pending", Reanalysis.RunLocation(root, "pending"));
        ReanalysisPlan plan;
        try
        {
            plan = Reanalysis.PlanAsync(template, root).GetAwaiter().GetResult();
        }
        catch (StorageException e) { throw new InvalidOperationException(e.Message, e); }
        var spec = plan.Spec;
        Console.Error.WriteLine($"llavamech reanalyze: model fingerprint {plan.Fingerprint[..16]} -> run {spec.RunId} in {spec.Output}" +
                                (plan.Existing is { } ex
                                    ? $" (analysed before, {ex.State} at {ex.UpdatedAt:yyyy-MM-dd HH:mm}Z: resuming; committed shards are skipped)"
                                    : " (a new model version: new run)"));
        JobStatus? final = null;
        int code = PipelineCommands.RunEmbedded(cl, spec, s => final = s);
        if (final is null) return code;
        Reanalysis.RecordAsync(plan, final).GetAwaiter().GetResult();
        if (final.ShardsTotal > 0)
            Console.WriteLine($"reanalysis   {final.ShardsSkipped} of {final.ShardsTotal} shards were already computed for this model (skipped), " +
                              $"{final.ShardsTotal - final.ShardsSkipped} computed now");
        if (final.State != JobState.Completed) return code;
        if (plan.Previous is { } prev)
        {
            Console.WriteLine($"previous     {prev.RunId} ({prev.ModelDir}, completed {prev.UpdatedAt:yyyy-MM-dd HH:mm}Z)");
            if (cl.Get("diff-out") is { } diffOut)
            {
                var result = RunDiff.ComputeAsync(prev.Output, spec.Output).GetAwaiter().GetResult();
                var files = RunDiff.WriteAsync(result, Path.GetFullPath(diffOut), prev.RunId, spec.RunId).GetAwaiter().GetResult();
                PrintDiff(result, files, prev.RunId, spec.RunId);
            }
            else
                Console.WriteLine($"compare      ./llavamech diff --a {prev.Output} --b {spec.Output} --out <dir>");
        }
        else Console.WriteLine("previous     none: this is the first completed run of the root");
        return code;
    }

    public static readonly CommandLine.OptionSpec[] DiffSpecs =
    [
        new("a", "RUN", "the earlier run: its output folder, az://container/prefix or https blob URL (a reanalyze --out root: its latest completed run)", Required: true),
        new("b", "RUN", "the later run, compared with A", Required: true),
        new("out", "DIR", "folder for head_diff.parquet, layer_diff.parquet, diff.md, diff.json, heads_diff_<task>.png", Required: true),
        new("name-a", "NAME", "label of A in the tables and figures", "A"),
        new("name-b", "NAME", "label of B", "B"),
        new("top", "N", "heads listed per task on the terminal", "5") { Range = CommandLine.NumericRange.Int(1, 1_000_000) },
    ];

    public const string DiffDescription = """
        Which heads and layers changed importance between two runs of the pipeline (typically two
        model versions over the same dataset). Per task, over the examples both runs hold: the mean
        log-probability increase of every head and layer block in A and in B, the difference B − A,
        the importance rank in each (1 = largest mean) and the rank change (positive: more important
        in B); the Spearman rank correlation of head importance between A and B; the overlap of the
        top-10 heads; and the layers ordered by how much their heads moved.

        Files: head_diff.parquet and layer_diff.parquet (task, layer, head or component, mean_a,
        mean_b, diff, rank_a, rank_b, rank_change), diff.md (the same as Markdown tables),
        diff.json, and heads_diff_<task>.png, a layers x heads heatmap of B − A (red: higher in B).

        --a and --b are run outputs, or roots of ./llavamech reanalyze (each stands for its most
        recently completed run; the summary names the run ids compared).
        """;

    public const string DiffExamples = """
          ./llavamech diff --a out/nightly/fp-3f2a9c1d0b7e41aa --b out/nightly/fp-9b01c4e2d5f6a7b8 --out reports/diff
          ./llavamech diff --a az://nightly/eval/fp-3f2a... --b az://nightly/eval/fp-9b01... --out reports/diff --name-a v1 --name-b v2
        """;

    public static int Diff(CommandLine cl)
    {
        string a = cl.Require("a"), b = cl.Require("b");
        foreach (var (name, v) in new[] { ("a", a), ("b", b) })
        {
            try { _ = OutputLocation.Parse(v); }
            catch (ArgumentException e) { throw new UsageException($"--{name}: {e.Message}"); }
        }
        int top = cl.GetInt("top");
        string nameA = cl.Require("name-a"), nameB = cl.Require("name-b");
        RunDiffResult result;
        try
        {
            result = RunDiff.ComputeAsync(Local(a), Local(b)).GetAwaiter().GetResult();
        }
        catch (StorageException e) { throw new InvalidOperationException(e.Message, e); }
        var files = RunDiff.WriteAsync(result, Path.GetFullPath(cl.Require("out")), nameA, nameB).GetAwaiter().GetResult();
        PrintDiff(result, files, nameA, nameB, top);
        return 0;
    }

    private static string Local(string location) => OutputLocation.Normalize(location);

    private static void PrintDiff(RunDiffResult r, IReadOnlyList<string> files, string nameA, string nameB, int top = 5)
    {
        foreach (var line in RunDiff.Describe(r, files, nameA, nameB, top)) Console.WriteLine(line);
    }
}
