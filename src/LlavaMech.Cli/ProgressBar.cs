using System.Diagnostics;

namespace LlavaMech.Cli;

/// <summary>A one-line progress bar on stderr with rate and ETA; plain periodic lines when stderr is not a terminal.</summary>
public sealed class ProgressBar(string label, long total)
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
        double rate = done / Math.Max(1e-9, _clock.Elapsed.TotalSeconds);
        double eta = rate > 0 ? (total - done) / rate : 0;
        int width = 30, filled = (int)(frac * width);
        var bar = new string('#', filled) + new string('-', width - filled);
        var line = $"{label} [{bar}] {done}/{total} {rate:0.0}/s ETA {TimeSpan.FromSeconds(eta):mm\\:ss}{(note is null ? "" : "  " + note)}";
        if (_tty) Console.Error.Write("\r" + line.PadRight(Math.Max(line.Length, 100)));
        else Console.Error.WriteLine(line);
    }

    public void Done()
    {
        if (_tty) Console.Error.WriteLine();
    }
}
