using System.Diagnostics;
using System.Text;
using LlavaMech.Testing;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// The built CLI (<c>dotnet llavamech.dll ...</c>) as a child process, with its output captured. Disposing kills it
/// (and its children) if it still runs, so a failing test leaves nothing behind; silos also get --parent-pid, so they
/// stop by themselves should this process die first.
/// </summary>
public sealed class ChildProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new(), _all = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The CLI of this test build: LLAVAMECH_CLI_DLL, else src/LlavaMech.Cli/bin/&lt;this configuration&gt;/net10.0/llavamech.dll.</summary>
    public static string CliDll
    {
        get
        {
            if (Environment.GetEnvironmentVariable("LLAVAMECH_CLI_DLL") is { Length: > 0 } env) return env;
            string config = AppContext.BaseDirectory.Replace('\\', '/').Contains("/bin/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
            string dll = Path.Combine(Fixtures.RepoRoot, "src", "LlavaMech.Cli", "bin", config, "net10.0", "llavamech.dll");
            return File.Exists(dll) ? dll : throw new FileNotFoundException($"the CLI is not built: {dll} (dotnet build src/LlavaMech.Cli -c {config})");
        }
    }

    private ChildProcess(string name, IEnumerable<string> args, IReadOnlyDictionary<string, string>? env)
    {
        Name = name;
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Fixtures.RepoRoot,
        };
        psi.ArgumentList.Add(CliDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        // Only what the test passes: no LLAVAMECH_ settings leak in from this process's environment.
        foreach (var k in psi.Environment.Keys.Where(k => k.StartsWith("LLAVAMECH_", StringComparison.Ordinal) || k.StartsWith("AZURE_", StringComparison.Ordinal)).ToList())
            psi.Environment.Remove(k);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        _process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_all) { _stdout.AppendLine(e.Data); _all.AppendLine(e.Data); }
        };
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_all) _all.AppendLine(e.Data);
        };
        _process.Exited += (_, _) => _exited.TrySetResult();
        _process.Start();
        Pid = _process.Id;
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Name { get; }
    public int Pid { get; }

    public static ChildProcess Start(string name, IEnumerable<string> args, IReadOnlyDictionary<string, string>? env = null) => new(name, args, env);

    public bool HasExited => _process.HasExited;

    public string Stdout { get { lock (_all) return _stdout.ToString(); } }

    /// <summary>Standard output and error, interleaved as they came.</summary>
    public string Output { get { lock (_all) return _all.ToString(); } }

    /// <summary>Sends a real signal, as kill -SIG PID does (15 SIGTERM, 2 SIGINT).</summary>
    public void Signal(int signal)
    {
        if (kill(Pid, signal) != 0)
            throw new InvalidOperationException($"kill({Pid}, {signal}) failed: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    /// <summary>SIGKILL, as kill -9: no shutdown code runs.</summary>
    public void KillHard()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: false);
    }

    /// <summary>The exit code; kills the process and throws <see cref="TimeoutException"/> after <paramref name="timeout"/>.</summary>
    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        if (await Task.WhenAny(_exited.Task, Task.Delay(timeout)) != _exited.Task)
        {
            KillTree();
            throw new TimeoutException($"{Name} did not finish within {timeout.TotalSeconds:0} s; output:\n{Output}");
        }
        _process.WaitForExit();   // drains the redirected output
        return _process.ExitCode;
    }

    /// <summary>Waits until the output contains <paramref name="text"/>; throws when the process exits first or after <paramref name="timeout"/>.</summary>
    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited) throw new InvalidOperationException($"{Name} exited ({_process.ExitCode}) before printing '{text}':\n{Output}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{Name} did not print '{text}' within {timeout.TotalSeconds:0} s:\n{Output}");
            await Task.Delay(100);
        }
    }

    /// <summary>Runs the CLI to its end: exit code and output.</summary>
    public static async Task<(int Code, string Stdout, string Output)> RunAsync(string name, IEnumerable<string> args, IReadOnlyDictionary<string, string>? env,
        TimeSpan timeout)
    {
        await using var p = Start(name, args, env);
        int code = await p.WaitAsync(timeout);
        return (code, p.Stdout, p.Output);
    }

    private void KillTree()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException) { }
    }

    public ValueTask DisposeAsync()
    {
        KillTree();
        try { _process.WaitForExit(10_000); } catch (InvalidOperationException) { }
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
