namespace LlavaMech.Pipeline.Tests;

/// <summary><see cref="JobText"/>: what run, submit --wait and status print about a job.</summary>
public class JobTextTests
{
    private static JobStatus Running(int done, int total, double? eta) =>
        JobStatus.Unknown("run-1") with { State = JobState.Running, ShardsTotal = total, ShardsDone = done, ShardsRunning = 1, ShardsSkipped = 2,
            ExamplesTotal = total * 10, ExamplesDone = done * 10, ExamplesPerSecond = 12.34, EtaSeconds = eta };

    [Fact]
    public void The_progress_line_fills_its_bar_by_committed_shards_and_says_rate_eta_and_resumed_shards()
    {
        string line = JobText.Progress(Running(5, 10, 125));
        Assert.StartsWith("[" + new string('#', 15) + new string('-', 15) + "] 5/10 shards  50/100 examples  12.3/s  ETA 02:05", line);
        Assert.Contains("running 1", line);
        Assert.Contains("(resumed: 2 committed before)", line);
        Assert.Contains("ETA 1:01:01", JobText.Progress(Running(1, 10, 3661)));
        Assert.Contains("ETA --:--", JobText.Progress(Running(0, 10, null)));
        Assert.EndsWith("  storage unreachable", JobText.Progress(Running(1, 10, null) with { Notice = "storage unreachable" }));
        Assert.StartsWith("preparing:", JobText.Progress(JobStatus.Unknown("x") with { State = JobState.Preparing }));
    }

    [Fact]
    public void A_job_without_a_summary_says_its_state_error_and_model()
    {
        var failed = JobStatus.Unknown("run-2") with { State = JobState.Failed, Error = "the model folder is gone", ModelFingerprint = new string('a', 64) };
        Assert.Equal(["run run-2: failed in 1.5 s", "error         the model folder is gone", $"model         {new string('a', 16)}"],
            JobText.Summary(failed, TimeSpan.FromSeconds(1.5)).ToArray());
        var status = JobText.Status(Running(3, 4, 10) with { Workers = 2 }).ToArray();
        Assert.Equal("job           run-1: running", status[0]);
        Assert.Equal("shards        3 done, 1 running, 0 failed, 0 pending of 4 (2 committed before this job)", status[1]);
        Assert.Equal("examples      30/40, 0 rejects, 12.3/s, ETA 00:00:10, 2 workers", status[2]);
    }
}
