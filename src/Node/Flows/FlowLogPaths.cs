namespace Gateway.Node.Flows;

/// <summary>Where a node's flow log lives: one JSON-lines file and one Unix stream socket per interface.</summary>
public static class FlowLogPaths
{
    public const string DefaultDirectory = "/var/run/gateway";
    public const string FileSuffix = ".flows.jsonl";
    public const string SocketSuffix = ".flows.sock";

    /// <summary><c>/var/run/gateway/IFACE.flows.jsonl</c> (or under <paramref name="directory"/>).</summary>
    public static string FileFor(string interfaceName, string directory = DefaultDirectory) =>
        Path.Combine(directory, Validate(interfaceName) + FileSuffix);

    /// <summary><c>/var/run/gateway/IFACE.flows.sock</c> (or under <paramref name="directory"/>).</summary>
    public static string SocketFor(string interfaceName, string directory = DefaultDirectory) =>
        Path.Combine(directory, Validate(interfaceName) + SocketSuffix);

    /// <summary>
    /// The socket that goes with a flow log file at a custom path: <c>X.flows.jsonl</c> ->
    /// <c>X.flows.sock</c>, any other name -> <c>NAME.sock</c>. <c>gateway observe --file</c>
    /// looks there for the live stream.
    /// </summary>
    public static string SocketForFile(string filePath)
    {
        ArgumentException.ThrowIfNullOrEmpty(filePath);
        return filePath.EndsWith(FileSuffix, StringComparison.Ordinal)
            ? filePath[..^FileSuffix.Length] + SocketSuffix
            : filePath + ".sock";
    }

    private static string Validate(string interfaceName)
    {
        ArgumentException.ThrowIfNullOrEmpty(interfaceName);
        // Linux interface names: at most 15 bytes, no '/' (they become file names here).
        if (interfaceName.Contains('/') || interfaceName.Length > 15 || interfaceName is "." or "..")
        {
            throw new ArgumentException($"'{interfaceName}' is not a valid interface name.", nameof(interfaceName));
        }
        return interfaceName;
    }
}
