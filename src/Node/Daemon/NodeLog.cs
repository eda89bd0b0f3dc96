namespace Gateway.Node.Daemon;

/// <summary>Line-oriented log for the daemon: UTC time, level, message. Never given key material.</summary>
public sealed class NodeLog(TextWriter writer, bool verbose = false)
{
    private readonly Lock _lock = new();

    public bool Verbose { get; } = verbose;

    public void Info(string message) => Write("info", message);

    public void Warn(string message) => Write("warn", message);

    public void Error(string message) => Write("error", message);

    public void Debug(string message)
    {
        if (Verbose)
        {
            Write("debug", message);
        }
    }

    private void Write(string level, string message)
    {
        lock (_lock)
        {
            writer.WriteLine($"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {level} {message}");
            writer.Flush();
        }
    }
}
