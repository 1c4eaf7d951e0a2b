using System.Globalization;

namespace LlavaMech.Cli;

/// <summary>Raised for a usage mistake: the message is shown with a pointer to --help, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// "--name value" and "--flag" options of one command. Every option a command reads is declared
/// with its help text, so --help is generated from the same list that parsing checks against.
/// </summary>
public sealed class CommandLine
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly List<OptionSpec> _specs;

    public sealed record OptionSpec(string Name, string? ValueName, string Help, string? Default = null, bool Required = false);

    public CommandLine(string command, IReadOnlyList<string> args, IReadOnlyList<OptionSpec> specs)
    {
        Command = command;
        _specs = specs.ToList();
        for (int i = 0; i < args.Count; i++)
        {
            var a = args[i];
            if (a is "-h" or "--help") { HelpRequested = true; continue; }
            if (!a.StartsWith("--", StringComparison.Ordinal)) throw new UsageException($"unexpected argument '{a}'");
            var eq = a.IndexOf('=');
            var name = eq > 0 ? a[2..eq] : a[2..];
            var spec = _specs.FirstOrDefault(s => s.Name == name)
                ?? throw new UsageException($"unknown option '--{name}' for '{command}'");
            if (spec.ValueName is null) { _values[name] = null; continue; }
            string value;
            if (eq > 0) value = a[(eq + 1)..];
            else if (i + 1 < args.Count) value = args[++i];
            else throw new UsageException($"option '--{name}' needs a value ({spec.ValueName})");
            _values[name] = value;
        }
        if (!HelpRequested)
            foreach (var s in _specs.Where(s => s.Required && !_values.ContainsKey(s.Name)))
                throw new UsageException($"'{command}' needs --{s.Name} {s.ValueName}");
    }

    public string Command { get; }
    public bool HelpRequested { get; }

    public bool Flag(string name) => _values.ContainsKey(name);

    public string? Get(string name) => _values.TryGetValue(name, out var v) ? v : _specs.First(s => s.Name == name).Default;

    public string Require(string name) => Get(name) ?? throw new UsageException($"'{Command}' needs --{name}");

    public int GetInt(string name)
    {
        var v = Require(name);
        return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)
            ? n : throw new UsageException($"--{name} expects an integer, got '{v}'");
    }

    public static string Help(string usage, string description, IReadOnlyList<OptionSpec> specs, string? examples = null)
    {
        var w = new StringWriter();
        w.WriteLine($"usage: {usage}");
        w.WriteLine();
        w.WriteLine(description.TrimEnd());
        w.WriteLine();
        w.WriteLine("options:");
        foreach (var s in specs)
        {
            var head = s.ValueName is null ? $"  --{s.Name}" : $"  --{s.Name} {s.ValueName}";
            var tail = s.Help + (s.Default is not null ? $" (default: {s.Default})" : "") + (s.Required ? " [required]" : "");
            w.WriteLine(head.Length < 26 ? head.PadRight(26) + tail : head + Environment.NewLine + new string(' ', 26) + tail);
        }
        w.WriteLine("  -h, --help".PadRight(26) + "show this help");
        if (examples is not null) { w.WriteLine(); w.WriteLine("examples:"); w.WriteLine(examples.TrimEnd()); }
        return w.ToString();
    }
}
