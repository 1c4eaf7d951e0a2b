using System.Diagnostics;
using LlavaMech.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Xunit.Abstractions;

namespace LlavaMech.Pipeline.Tests;

/// <summary>The storage wait ends when asked, and log warnings carry no stack trace unless debug logging is on.</summary>
[Collection(PipelineCollection.Name)]
public class InputBoundTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Preparation_against_unreachable_storage_gives_up_within_the_storage_wait()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 2, copies: 1);
        int port = PipelineHost.FreePort();   // nothing listens there: every request is refused, then retried with backoff
        using var env = new EnvScope(OutputLocation.ConnectionVariable, AzuriteFixture.Connection(port));
        const double wait = 20;
        var spec = new JobSpec("wait-" + Guid.NewGuid().ToString("N")[..8], TestData.TinyModel, data.ManifestPath, "az://results/wait",
            new JobOptions { ShardSize = 2, StorageWaitSeconds = wait });
        var clock = Stopwatch.StartNew();
        TimeSpan? firstFailure = null;
        var e = await Assert.ThrowsAsync<JobPreparationException>(() =>
            JobPreparation.PrepareWithRetriesAsync(spec, n => { if (n is not null) firstFailure ??= clock.Elapsed; }, CancellationToken.None));
        var total = clock.Elapsed;
        output.WriteLine($"first try failed after {firstFailure?.TotalSeconds:0.0} s; gave up after {total.TotalSeconds:0.0} s (wait {wait} s): {e.Message}");
        Assert.Contains($"output storage http://127.0.0.1:{port}/devstoreaccount1/results/wait is unreachable", e.Message);
        Assert.NotNull(firstFailure);
        // The wait counts from the start of the first failed try, and the last try is cut off at its end: the total is
        // the wait (or the first try alone, if that took longer), not the wait plus one more try's retries.
        Assert.True(total.TotalSeconds <= Math.Max(wait, firstFailure!.Value.TotalSeconds) + 3, $"gave up after {total.TotalSeconds:0.0} s");
        Assert.True(total.TotalSeconds >= wait - 1, $"gave up early, after {total.TotalSeconds:0.0} s");
    }

    [Fact]
    public void A_warning_with_an_exception_prints_its_message_and_the_trace_only_when_asked()
    {
        Exception e;
        try { throw new InvalidOperationException("outer problem", new IOException("disk said no")); }
        catch (Exception x) { e = x; }

        string Log(bool traces)
        {
            var formatter = new BriefConsoleFormatter(new StaticOptions(new BriefConsoleFormatterOptions { StackTraces = traces }));
            var w = new StringWriter();
            formatter.Write(new LogEntry<string>(LogLevel.Warning, "LlavaMech.Pipeline.JobGrain", new EventId(3), "job x: storage unreachable", e, (s, _) => s), null, w);
            return w.ToString();
        }

        string brief = Log(false);
        Assert.Equal("warn: LlavaMech.Pipeline.JobGrain: job x: storage unreachable (InvalidOperationException: outer problem; inner: IOException: disk said no)" + Environment.NewLine, brief);
        Assert.DoesNotContain("   at ", brief);
        string full = Log(true);
        Assert.Contains("   at ", full);
        Assert.StartsWith(brief.TrimEnd(), full);
    }

    private sealed class StaticOptions(BriefConsoleFormatterOptions value) : IOptionsMonitor<BriefConsoleFormatterOptions>
    {
        public BriefConsoleFormatterOptions CurrentValue => value;
        public BriefConsoleFormatterOptions Get(string? name) => value;
        public IDisposable? OnChange(Action<BriefConsoleFormatterOptions, string?> listener) => null;
    }
}
