namespace LlavaMech.Cli;

/// <summary>A one-line progress bar on stderr with rate and ETA; plain periodic lines when stderr is not a terminal.</summary>
/// <param name="startDone">items already done when the bar is created (they do not count towards the rate).</param>
public sealed class ProgressBar(string label, long total, long startDone = 0) : IProgress<int>
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly bool _tty = !Console.IsErrorRedirected;
    private long _lastDrawMs = -1000;

    public void Report(long done, string? note = null)
    {
        long now = _clock.ElapsedMilliseconds;
        if (done < total && now - _lastDrawMs < (_tty ? 100 : 5000)) return;
        _lastDrawMs = now;
        double frac = total > 0 ? (double)done / total : 1;
        double rate = (done - startDone) / Math.Max(1e-9, _clock.Elapsed.TotalSeconds);
        string eta = rate > 0 ? TimeSpan.FromSeconds((total - done) / rate).ToString(@"mm\:ss") : done >= total ? "00:00" : "--:--";
        int width = 30, filled = (int)(frac * width);
        var bar = new string('#', filled) + new string('-', width - filled);
        var line = $"{label} [{bar}] {done}/{total} {rate:0.0}/s ETA {eta}{(note is null ? "" : "  " + note)}";
        if (_tty) Console.Error.Write("\r" + line.PadRight(Math.Max(line.Length, 100)));
        else Console.Error.WriteLine(line);
    }

    void IProgress<int>.Report(int done) => Report(done);

    public void Done()
    {
        if (_tty) Console.Error.WriteLine();
    }
}
