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
