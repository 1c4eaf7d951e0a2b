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
    private readonly Dictionary<string, List<string>> _repeated = new(StringComparer.Ordinal);
    private readonly List<OptionSpec> _specs;

    /// <summary>
    /// One option. <see cref="Range"/> declares a numeric option: its value (given or default) is checked against it
    /// before any command runs, so no out-of-range number reaches the model or native code. A
    /// <see cref="Repeatable"/> option may be given several times (<see cref="GetAll"/>). An option with a
    /// <see cref="ConfigKey"/> overrides that key of the command's configuration (<see cref="Overrides"/>).
    /// </summary>
    public sealed record OptionSpec(string Name, string? ValueName, string Help, string? Default = null, bool Required = false)
    {
        public NumericRange? Range { get; init; }
        public bool Repeatable { get; init; }
        public string? ConfigKey { get; init; }
    }

    /// <summary>The accepted values of a numeric option: [<see cref="Min"/>, <see cref="Max"/>], whole numbers when <see cref="Integer"/>.</summary>
    public sealed record NumericRange(double Min, double Max, bool Integer)
    {
        public static NumericRange Int(long min, long max = int.MaxValue) => new(min, max, true);
        public static NumericRange Real(double min, double max) => new(min, max, false);

        /// <summary>A TCP port (0: none / pick one, where the option says so).</summary>
        public static NumericRange Port { get; } = Int(0, 65535);

        public override string ToString() =>
            string.Create(CultureInfo.InvariantCulture, $"{(Integer ? "an integer" : "a number")} from {Min} to {Max}");

        /// <summary>The message of a value outside the range, or null when it is inside.</summary>
        public string? Check(string name, string value)
        {
            double v;
            if (Integer)
            {
                if (!long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n))
                    return $"--{name} expects {this}, got '{value}'";
                v = n;
            }
            else if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out v) || !double.IsFinite(v))
                return $"--{name} expects {this}, got '{value}'";
            return v < Min || v > Max ? $"--{name} must be {this}, got {value}" : null;
        }
    }

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
            if (spec.Repeatable)
            {
                if (!_repeated.TryGetValue(name, out var list)) _repeated[name] = list = [];
                list.Add(value);
            }
            _values[name] = value;
        }
        if (HelpRequested) return;
        foreach (var s in _specs.Where(s => s.Range is not null))
            if (Get(s.Name) is { } v && s.Range!.Check(s.Name, v) is { } why)
                throw new UsageException(why);
        foreach (var s in _specs.Where(s => s.Required && !_values.ContainsKey(s.Name)))
            throw new UsageException($"'{command}' needs --{s.Name} {s.ValueName}");
    }

    public string Command { get; }
    public bool HelpRequested { get; }

    public bool Flag(string name) => _values.ContainsKey(name);

    public string? Get(string name) => _values.TryGetValue(name, out var v) ? v : _specs.First(s => s.Name == name).Default;

    public string Require(string name) => Get(name) ?? throw new UsageException($"'{Command}' needs --{name}");

    /// <summary>The configuration keys of the options given (<see cref="OptionSpec.ConfigKey"/>) with their values.</summary>
    public IEnumerable<KeyValuePair<string, string?>> Overrides() =>
        _specs.Where(s => s.ConfigKey is not null && _values.ContainsKey(s.Name)).Select(s => KeyValuePair.Create(s.ConfigKey!, _values[s.Name]));

    /// <summary>Every value of a repeatable option, in order (none: empty).</summary>
    public IReadOnlyList<string> GetAll(string name) => _repeated.TryGetValue(name, out var l) ? l : [];

    public int GetInt(string name)
    {
        var v = Require(name);
        return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)
            ? n : throw new UsageException($"--{name} expects an integer, got '{v}'");
    }

    public long GetLong(string name)
    {
        var v = Require(name);
        return long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)
            ? n : throw new UsageException($"--{name} expects an integer, got '{v}'");
    }

    public double GetDouble(string name)
    {
        var v = Require(name);
        return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d)
            ? d : throw new UsageException($"--{name} expects a number, got '{v}'");
    }

    /// <summary>The declared options of a command that take a number (with their ranges).</summary>
    public static IEnumerable<OptionSpec> NumericOptions(IEnumerable<OptionSpec> specs) => specs.Where(s => s.Range is not null);

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
            var tail = (s.ConfigKey is { } key ? key + ": " : "") + s.Help + (s.Range is { } r ? string.Create(CultureInfo.InvariantCulture, $" [{r.Min}..{r.Max}]") : "") + (s.Repeatable ? " (repeatable)" : "")
                       + (s.Default is not null ? $" (default: {s.Default})" : "") + (s.Required ? " [required]" : "");
            w.WriteLine(head.Length < 26 ? head.PadRight(26) + tail : head + Environment.NewLine + new string(' ', 26) + tail);
        }
        w.WriteLine("  -h, --help".PadRight(26) + "show this help");
        if (examples is not null) { w.WriteLine(); w.WriteLine("examples:"); w.WriteLine(examples.TrimEnd()); }
        return w.ToString();
    }
}
