using System.Diagnostics;

namespace LlavaMech.Telemetry;

/// <summary>
/// Spans of the pipeline on the activity source <see cref="TelemetryNames.ActivitySource"/>: one per shard (lease to
/// report) and, inside it, one per example. Starting a span costs nothing when nobody listens (the methods return
/// null). Spans started inside an Orleans grain call join Orleans' trace when Orleans' activity propagation is on.
/// </summary>
public static class PipelineTracing
{
    public static readonly ActivitySource Source = new(TelemetryNames.ActivitySource, typeof(PipelineTracing).Assembly.GetName().Version?.ToString());

    /// <summary>Starts the span of one shard lease (dispose it when the shard is reported).</summary>
    public static Activity? StartShard(string jobId, int shard, string device, int examples, string? worker = null)
    {
        var a = Source.StartActivity("shard", ActivityKind.Internal);
        if (a is null) return null;
        a.SetTag(TelemetryNames.JobIdAttribute, jobId);
        a.SetTag(TelemetryNames.ShardAttribute, shard);
        a.SetTag(TelemetryNames.DeviceAttribute, device);
        a.SetTag(TelemetryNames.ExamplesAttribute, examples);
        if (worker is not null) a.SetTag(TelemetryNames.WorkerAttribute, worker);
        return a;
    }

    /// <summary>Starts the span of one example (a child of the current shard span when there is one).</summary>
    public static Activity? StartExample(string jobId, string exampleId, string device, ActivityContext parent = default)
    {
        var a = parent == default
            ? Source.StartActivity("example", ActivityKind.Internal)
            : Source.StartActivity("example", ActivityKind.Internal, parent);
        if (a is null) return null;
        a.SetTag(TelemetryNames.JobIdAttribute, jobId);
        a.SetTag(TelemetryNames.ExampleIdAttribute, exampleId);
        a.SetTag(TelemetryNames.DeviceAttribute, device);
        return a;
    }

    /// <summary>Sets the span's outcome (committed, rejected, ...) and an OK status.</summary>
    public static void Succeed(this Activity? activity, string outcome)
    {
        if (activity is null) return;
        activity.SetTag(TelemetryNames.OutcomeAttribute, outcome);
        activity.SetStatus(ActivityStatusCode.Ok);
    }

    /// <summary>Marks the span failed with the exception (an OpenTelemetry "exception" event and an error status).</summary>
    public static void Fail(this Activity? activity, Exception error, string outcome = "failed")
    {
        if (activity is null) return;
        activity.SetTag(TelemetryNames.OutcomeAttribute, outcome);
        activity.AddException(error);
        activity.SetStatus(ActivityStatusCode.Error, error.Message);
    }
}
