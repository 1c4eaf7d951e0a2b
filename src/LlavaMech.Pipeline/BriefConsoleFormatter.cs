using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace LlavaMech.Pipeline;

/// <summary>Options of <see cref="BriefConsoleFormatter"/>.</summary>
public sealed class BriefConsoleFormatterOptions : ConsoleFormatterOptions
{
    /// <summary>Write an entry's exception with its stack trace (debug logging, or LLAVAMECH_DEBUG=1); otherwise only its type and message.</summary>
    public bool StackTraces { get; set; }
}

/// <summary>
/// One line per entry, "HH:mm:ss level: category: message", and for an entry with an exception only
/// " (Type: message; inner: Type: message)": a warning says what went wrong without a stack trace. The trace follows
/// on the next lines only with <see cref="BriefConsoleFormatterOptions.StackTraces"/>.
/// </summary>
public sealed class BriefConsoleFormatter(IOptionsMonitor<BriefConsoleFormatterOptions> options) : ConsoleFormatter(Name)
{
    public new const string Name = "llavamech-brief";

    public override void Write<TState>(in LogEntry<TState> entry, IExternalScopeProvider? scopeProvider, TextWriter writer)
    {
        string? message = entry.Formatter?.Invoke(entry.State, entry.Exception);
        if (message is null && entry.Exception is null) return;
        var o = options.CurrentValue;
        if (o.TimestampFormat is { } tf) writer.Write(DateTimeOffset.Now.ToString(tf, System.Globalization.CultureInfo.InvariantCulture));
        writer.Write(Level(entry.LogLevel));
        writer.Write(": ");
        writer.Write(entry.Category);
        writer.Write(": ");
        writer.Write(message?.ReplaceLineEndings(" "));
        if (entry.Exception is { } e)
        {
            writer.Write(" (");
            writer.Write(Summary(e));
            writer.Write(')');
            if (o.StackTraces)
            {
                writer.WriteLine();
                writer.Write(e.ToString());
            }
        }
        writer.WriteLine();
    }

    /// <summary>"Type: message" of the exception and each inner one, without stack frames.</summary>
    public static string Summary(Exception e)
    {
        var parts = new List<string>();
        for (var x = e; x is not null && parts.Count < 4; x = x.InnerException)
            parts.Add($"{x.GetType().Name}: {x.Message.ReplaceLineEndings(" ")}");
        return string.Join("; inner: ", parts);
    }

    private static string Level(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        LogLevel.Critical => "crit",
        _ => "none",
    };
}
