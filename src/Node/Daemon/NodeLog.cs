namespace Gateway.Node.Daemon;

/// <summary>Line-oriented log for the daemon: UTC time, level, message. Never given key material.</summary>
public sealed class NodeLog(TextWriter writer, bool verbose = false)
{
    private readonly Lock _lock = new();

    public bool Verbose { get; } = verbose;

    /// <summary>Starts each line with its syslog priority (<c>&lt;6&gt;</c> info, <c>&lt;4&gt;</c> warn,
    /// <c>&lt;3&gt;</c> error, <c>&lt;7&gt;</c> debug), which journald reads as the entry's level when
    /// the writer is a systemd service's stderr (JOURNAL_STREAM set).</summary>
    public bool SyslogPrefixes { get; init; }

    public void Info(string message) => Write("<6>", "info", message);

    public void Warn(string message) => Write("<4>", "warn", message);

    public void Error(string message) => Write("<3>", "error", message);

    public void Debug(string message)
    {
        if (Verbose)
        {
            Write("<7>", "debug", message);
        }
    }

    private void Write(string priority, string level, string message)
    {
        lock (_lock)
        {
            writer.WriteLine($"{(SyslogPrefixes ? priority : "")}{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {level} {message}");
            writer.Flush();
        }
    }
}
