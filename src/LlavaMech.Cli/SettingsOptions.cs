namespace LlavaMech.Cli;

/// <summary>
/// Command-line options made from a settings record's <see cref="SettingAttribute"/> properties, so an option is
/// declared once, on the record: name, value name, help, range, and the default (the record's initial value).
/// </summary>
public static class SettingsOptions
{
    /// <summary>One option per declared setting of <typeparamref name="T"/> (or only those named in <paramref name="only"/>).</summary>
    public static CommandLine.OptionSpec[] Specs<T>(params string[] only) where T : new()
    {
        var defaults = new T();
        return Declared<T>(only).Select(s =>
        {
            var a = s.Attribute;
            string help = s.Choices is { } choices ? $"{a.Help}; one of {string.Join(", ", choices)}" : a.Help;
            var spec = new CommandLine.OptionSpec(a.Option, a.ValueName, help, s.Format(s.Property.GetValue(defaults)));
            if (!double.IsNaN(a.Min))
                spec = spec with { Range = s.Type == typeof(double) ? CommandLine.NumericRange.Real(a.Min, a.Max) : CommandLine.NumericRange.Int((long)a.Min, (long)a.Max) };
            return spec;
        }).ToArray();
    }

    /// <summary>The settings of the command line (defaults where an option is not given); a bad value is a usage error.</summary>
    /// <param name="only">the options the command declared (<see cref="Specs{T}"/> with the same names); empty: all.</param>
    public static T Bind<T>(CommandLine cl, params string[] only) where T : class, new()
    {
        var values = Declared<T>(only).ToDictionary(s => s.Option, s => cl.Require(s.Option));
        try { return Settings.With(new T(), values); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }

    private static IEnumerable<Settings.Declared> Declared<T>(string[] only) =>
        only.Length == 0 ? Settings.Of<T>() : only.Select(o => Settings.Of<T>().SingleOrDefault(s => s.Option == o)
            ?? throw new ArgumentException($"{typeof(T).Name} declares no setting '{o}'", nameof(only)));
}
