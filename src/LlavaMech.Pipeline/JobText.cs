using System.Globalization;
using LlavaMech.Reports;
using LlavaMech.Storage;

namespace LlavaMech.Pipeline;

/// <summary>
/// A job as text for people: the one-line progress of a running job, the summary of a finished one (examples, rejects,
/// accuracy, top heads, the interventions' effects, tables) and the status of any. The commands print these lines, so
/// <c>run</c>, <c>submit --wait</c>, <c>reanalyze</c> and <c>status</c> say the same thing the same way.
/// </summary>
public static class JobText
{
    /// <summary>One line: a bar of committed shards, examples, examples/s, ETA, running/failed/resumed shards, the job's notice.</summary>
    public static string Progress(JobStatus s)
    {
        string line;
        if (s.State == JobState.Preparing) line = "preparing: validating the checkpoint, reading the manifest, checking the output...";
        else if (s.ShardsTotal == 0) line = s.State.ToString().ToLowerInvariant();
        else
        {
            const int width = 30;
            int filled = (int)((double)s.ShardsDone / s.ShardsTotal * width);
            string eta = s.EtaSeconds is { } e ? TimeSpan.FromSeconds(Math.Round(e)).ToString(e >= 3600 ? @"h\:mm\:ss" : @"mm\:ss", CultureInfo.InvariantCulture) : "--:--";
            line = $"[{new string('#', filled)}{new string('-', width - filled)}] {s.ShardsDone}/{s.ShardsTotal} shards" +
                   $"  {s.ExamplesDone}/{s.ExamplesTotal} examples  {s.ExamplesPerSecond:0.0}/s  ETA {eta}" +
                   (s.ShardsRunning > 0 ? $"  running {s.ShardsRunning}" : "") +
                   (s.ShardsFailed > 0 ? $"  failed {s.ShardsFailed}" : "") +
                   (s.ShardsSkipped > 0 ? $"  (resumed: {s.ShardsSkipped} committed before)" : "") +
                   (s.State == JobState.Finalizing ? "  finalizing: aggregates and figures" : "");
        }
        return s.Notice is { } notice ? line + "  " + notice : line;
    }

    /// <summary>The summary of a job that ended after <paramref name="elapsed"/>.</summary>
    public static IEnumerable<string> Summary(JobStatus s, TimeSpan elapsed)
    {
        string state = s.State.ToString().ToLowerInvariant();
        yield return $"run {s.JobId}: {state} in {elapsed.TotalSeconds:0.0} s" +
                     (s.ShardsTotal > 0 ? $" ({s.ShardsDone}/{s.ShardsTotal} shards{(s.ShardsSkipped > 0 ? $", {s.ShardsSkipped} committed before" : "")})" : "");
        if (s.Error is not null) yield return $"error         {s.Error}";
        if (s.Summary is not { } sum)
        {
            if (s.ModelFingerprint is not null) yield return $"model         {s.ModelFingerprint[..16]}";
            yield break;
        }
        string tasks = string.Join(", ", sum.Tasks.Select(t => $"{t.Task} {t.Examples}"));
        yield return $"examples      {sum.Examples}{(tasks.Length > 0 ? $" ({tasks})" : "")}";
        yield return $"rejects       {sum.Rejects}{(sum.Rejects > 0 ? $" (reasons: {sum.Output}/{TableNames.Rejects}/*.parquet)" : "")}";
        if (sum.Accuracy is { } acc)
        {
            var per = sum.Tasks.Where(t => t.Accuracy is not null).Select(t => $"{t.Task} {t.Correct}/{t.WithExpected} = {t.Accuracy:P1}");
            yield return $"accuracy      {sum.Correct}/{sum.WithExpected} = {acc:P1} (argmax vs the expected answer's first token; {string.Join(", ", per)})";
        }
        else yield return "accuracy      n/a (no expected answers in the manifest)";
        foreach (var g in sum.TopHeads.GroupBy(h => h.Task))
            yield return $"top heads {g.Key,-4}" + string.Join("  ", g.Select(h =>
                $"L{h.Layer}H{h.Head} {SignedNumber.Format(h.Mean)} (top-{s.Spec?.Options.SummaryTopK ?? 10} in {h.TopKShare:P0}{(h.MeanAttnToImage is { } a ? $", {a:P0} on image" : "")})"));
        foreach (var g in sum.Causal.GroupBy(c => c.Task))
            yield return $"causal {g.Key,-7}" + string.Join("  ", g.Select(c =>
                $"{c.Selection} k={c.K}: delta {SignedNumber.Format(c.MeanDelta)}{(c.DeltaLo is { } lo ? $" [{SignedNumber.Format(lo)}, {SignedNumber.Format(c.DeltaHi!.Value)}]" : "")}, flips {c.FlipRate:P0} [{c.FlipLo:P0}, {c.FlipHi:P0}], n {c.N}"));
        if (sum.Causal.Length > 0) yield return "              (mean delta of log p(target) with its 95% t interval; flip rate with its 95% Wilson interval)";
        foreach (var g in sum.CausalPaired.GroupBy(c => c.Task))
            yield return $"paired {g.Key,-7}" + string.Join("  ", g.Select(c =>
                $"log_increase - {c.Versus}: {SignedNumber.Format(c.MeanDiff)}{(c.DiffLo is { } lo ? $" [{SignedNumber.Format(lo)}, {SignedNumber.Format(c.DiffHi!.Value)}]" : "")}, costs more in {c.ShareLogIncreaseCostsMore:P0}, n {c.N}"));
        foreach (var g in sum.Knockout.GroupBy(k => (k.Task, k.Window)))
            yield return $"knockout {g.Key.Task,-5}W={g.Key.Window}: " + string.Join("  ", g.Select(k => $"L{k.StartLayer}-{k.EndLayer} {SignedNumber.Format(k.MeanDelta)}")) +
                         $"  (mean delta per window of last:image knocked out, n {g.First().N})";
        foreach (var g in sum.ImageParts.GroupBy(p => p.Task))
            yield return $"image parts {g.Key,-4}" + string.Join("  ", g.Select(p => $"{p.Part}: attention {p.MeanAttnShare:P0}" +
                (p.MeanLogIncreaseShare is { } li ? $", log-increase {li:P0}" : ""))) + $"  (mean share of the image per part, n {g.First().Examples}; figures/image_parts.png)";
        yield return $"model         {s.ModelFingerprint?[..16]}  (model_fingerprint, sha256)";
        yield return $"tables        {sum.Output}/<table>/*.parquet:";
        foreach (var (table, rows) in sum.Tables)
            yield return $"                {table,-15} {rows,10:N0} rows";
        yield return $"summaries     {string.Join(", ", sum.Files)}";
    }

    /// <summary>Where a job stands: state, error and notice, inputs, shards and examples, times, and its summary once done.</summary>
    public static IEnumerable<string> Status(JobStatus s)
    {
        yield return $"job           {s.JobId}: {s.State.ToString().ToLowerInvariant()}";
        if (s.Error is not null) yield return $"error         {s.Error}";
        if (s.Notice is not null) yield return $"notice        {s.Notice}";
        if (s.Spec is { } spec) yield return $"inputs        {spec.ModelDir} over {spec.ManifestPath} -> {spec.Output}";
        if (s.ShardsTotal > 0)
        {
            yield return $"shards        {s.ShardsDone} done, {s.ShardsRunning} running, {s.ShardsFailed} failed, {s.ShardsPending} pending of {s.ShardsTotal}" +
                         (s.ShardsSkipped > 0 ? $" ({s.ShardsSkipped} committed before this job)" : "");
            yield return $"examples      {s.ExamplesDone}/{s.ExamplesTotal}, {s.Rejects} rejects, {s.ExamplesPerSecond:0.0}/s" +
                         (s.EtaSeconds is { } e ? $", ETA {TimeSpan.FromSeconds(Math.Round(e))}" : "") + $", {s.Workers} workers";
        }
        if (s.SubmittedAt is { } at) yield return $"submitted     {at:yyyy-MM-dd HH:mm:ss}Z{(s.FinishedAt is { } f ? $", finished {f:yyyy-MM-dd HH:mm:ss}Z" : "")}";
        if (s.Summary is { } sum)
            yield return $"summary       {sum.Examples} examples, {sum.Rejects} rejects{(sum.Accuracy is { } a ? $", accuracy {a:P1}" : "")}; {sum.Output}/summary.json";
    }
}
