using System.Globalization;
using System.Reflection;

namespace LlavaMech.Runtime;

/// <summary>
/// Declares a property of a settings record as a command-line option, once: its option name, value name and help.
/// The option's default is the property's initial value; <see cref="Min"/>/<see cref="Max"/> bound a number (checked
/// by the CLI before a command runs and by <see cref="Settings.Check"/>); an enum accepts its lower-case member names.
/// </summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class SettingAttribute(string option, string valueName, string help) : Attribute
{
    public string Option { get; } = option;
    public string ValueName { get; } = valueName;
    public string Help { get; } = help;
    public double Min { get; init; } = double.NaN;
    public double Max { get; init; } = double.NaN;

    /// <summary>The setting changes how the work is scheduled, never a result (so a resumed run may change it).</summary>
    public bool ResultNeutral { get; init; }
}

/// <summary>The <see cref="SettingAttribute"/> properties of a settings record, and what follows from them.</summary>
public static class Settings
{
    /// <summary>One declared setting.</summary>
    public sealed record Declared(PropertyInfo Property, SettingAttribute Attribute)
    {
        public string Option => Attribute.Option;
        public Type Type => Property.PropertyType;

        /// <summary>Lower-case member names of an enum setting; null for numbers and strings.</summary>
        public IReadOnlyList<string>? Choices => Type.IsEnum ? Enum.GetNames(Type).Select(n => n.ToLowerInvariant()).ToArray() : null;

        /// <summary>The value as the command line writes it (enums lower-case, numbers invariant).</summary>
        public string Format(object? value) => value switch
        {
            null => "",
            Enum e => e.ToString().ToLowerInvariant(),
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? "",
        };

        /// <summary>Parses the command line's text; an <see cref="ArgumentException"/> names the option and what it accepts.</summary>
        public object Parse(string text)
        {
            if (Type.IsEnum)
                return Enum.GetNames(Type).FirstOrDefault(n => n.Equals(text, StringComparison.OrdinalIgnoreCase)) is { } name
                    ? Enum.Parse(Type, name)
                    : throw new ArgumentException($"--{Option} {text}: use {string.Join(", ", Choices!)}");
            if (Type == typeof(int) && int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i)) return i;
            if (Type == typeof(long) && long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long l)) return l;
            if (Type == typeof(double) && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)) return d;
            if (Type == typeof(string)) return text;
            throw new ArgumentException($"--{Option} expects {(Type == typeof(double) ? "a number" : "an integer")}, got '{text}'");
        }
    }

    /// <summary>The declared settings of <typeparamref name="T"/>, in declaration order.</summary>
    public static IReadOnlyList<Declared> Of<T>() => Cache<T>.All;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first setting outside its declared range.</summary>
    public static void Check<T>(T settings)
    {
        foreach (var s in Of<T>())
        {
            if (double.IsNaN(s.Attribute.Min) && double.IsNaN(s.Attribute.Max)) continue;
            double v = Convert.ToDouble(s.Property.GetValue(settings), CultureInfo.InvariantCulture);
            if (v < s.Attribute.Min || v > s.Attribute.Max || double.IsNaN(v))
                throw new ArgumentException($"{s.Option} must be from {s.Attribute.Min.ToString(CultureInfo.InvariantCulture)} to {s.Attribute.Max.ToString(CultureInfo.InvariantCulture)}, got {s.Format(s.Property.GetValue(settings))}");
        }
    }

    /// <summary>
    /// The settings whose values differ between <paramref name="expected"/> and <paramref name="actual"/>, as
    /// "--option actual (expected)" texts; <see cref="SettingAttribute.ResultNeutral"/> settings are left out.
    /// </summary>
    public static IReadOnlyList<string> Differences<T>(T expected, T actual, string expectedLabel) =>
        Of<T>().Where(s => !s.Attribute.ResultNeutral && !Equals(s.Property.GetValue(expected), s.Property.GetValue(actual)))
            .Select(s => $"--{s.Option} {s.Format(s.Property.GetValue(actual))} ({expectedLabel} {s.Format(s.Property.GetValue(expected))})")
            .ToList();

    /// <summary>A copy of <paramref name="settings"/> with the given option values (by option name) parsed and set.</summary>
    public static T With<T>(T settings, IReadOnlyDictionary<string, string> values) where T : class
    {
        var copy = (T)typeof(T).GetMethod("<Clone>$")!.Invoke(settings, null)!;
        foreach (var s in Of<T>())
            if (values.TryGetValue(s.Option, out var text)) s.Property.SetValue(copy, s.Parse(text));
        return copy;
    }

    private static class Cache<T>
    {
        public static readonly IReadOnlyList<Declared> All = typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Select(p => (p, a: p.GetCustomAttribute<SettingAttribute>()))
            .Where(x => x.a is not null)
            .OrderBy(x => x.p.MetadataToken)
            .Select(x => new Declared(x.p, x.a!))
            .ToArray();
    }
}
