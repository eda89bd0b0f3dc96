namespace Gateway.Node.Configuration;

/// <summary>A configuration file is wrong; the message names the file and line.</summary>
public sealed class ConfigException(string file, int line, string problem)
    : Exception(line > 0 ? $"{file}:{line}: {problem}" : $"{file}: {problem}")
{
    public string File { get; } = file;

    /// <summary>1-based line, or 0 when the problem concerns the file as a whole.</summary>
    public int Line { get; } = line;

    public string Problem { get; } = problem;
}
