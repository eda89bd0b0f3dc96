using Gateway.Datapath;

namespace Gateway.Node.Link;

/// <summary>
/// Strict mode's fail-closed routes: a <c>prohibit</c> route with a high metric for every cluster
/// CIDR, so that cluster traffic the tunnel does not carry (daemon stopped, restarting or
/// crashed, a tunnel route deleted by hand) is refused by the kernel instead of leaving in
/// plaintext by the default route. They outlive the daemon on purpose: which prefixes an
/// interface installed is kept in a small state file (<c>/var/run/gateway/IFACE.strict</c>, one
/// prefix a line), so a restarted daemon adopts them and removes the ones its configuration no
/// longer names, and <c>gateway down IFACE</c> can remove them when the operator tears the
/// interface down on purpose.
/// </summary>
public sealed class StrictRoutes
{
    /// <summary>Metric of the prohibit routes: worse than any route that carries traffic.</summary>
    public const int Metric = 4242;

    public const string DefaultDirectory = "/var/run/gateway";

    private readonly string _statePath;
    private readonly HashSet<IpPrefix> _installed;

    /// <summary>Opens the state of <paramref name="interfaceName"/>: the prefixes an earlier run
    /// (or this one) installed.</summary>
    public StrictRoutes(string interfaceName, string? directory = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(interfaceName);
        _statePath = StatePath(interfaceName, directory);
        _installed = Read(_statePath);
    }

    public static string StatePath(string interfaceName, string? directory = null) =>
        Path.Combine(directory ?? DefaultDirectory, interfaceName + ".strict");

    /// <summary>The prefixes whose prohibit routes are in place.</summary>
    public IReadOnlyCollection<IpPrefix> Installed => _installed;

    /// <summary>
    /// Makes the prohibit routes exactly <paramref name="wanted"/>: adds (or adopts, as
    /// <c>ip route replace</c> is idempotent) each wanted prefix, then removes those installed
    /// earlier and no longer wanted. The state file is written before any route is added, so a
    /// crash in between never leaves a route nobody knows about. Throws
    /// <see cref="LinkException"/> when a route cannot be set.
    /// </summary>
    public void Reconcile(IEnumerable<IpPrefix> wanted)
    {
        var next = wanted.ToHashSet();
        Write(_statePath, _installed.Union(next));
        foreach (var prefix in next)
        {
            IpCommand.Run($"{Family(prefix)} route replace prohibit {prefix} metric {Metric}");
            _installed.Add(prefix);
        }
        foreach (var prefix in _installed.Except(next).ToList())
        {
            Delete(prefix);
            _installed.Remove(prefix);
        }
        Write(_statePath, _installed);
    }

    /// <summary>Removes every prohibit route the interface's state file names, and the file.
    /// Returns the prefixes removed (none when there is no state).</summary>
    public static IReadOnlyList<IpPrefix> RemoveAll(string interfaceName, string? directory = null)
    {
        string path = StatePath(interfaceName, directory);
        var installed = Read(path).ToList();
        foreach (var prefix in installed)
        {
            Delete(prefix);
        }
        File.Delete(path);
        return installed;
    }

    private static void Delete(IpPrefix prefix) =>
        IpCommand.Run($"{Family(prefix)} route del prohibit {prefix} metric {Metric}", check: false);

    private static string Family(IpPrefix prefix) => prefix.Address.IsV6 ? "-6" : "-4";

    private static HashSet<IpPrefix> Read(string path)
    {
        var set = new HashSet<IpPrefix>();
        if (!File.Exists(path))
        {
            return set;
        }
        foreach (var line in File.ReadAllLines(path))
        {
            // A line that is not a prefix is ignored: the file is ours, but never trusted blindly.
            if (IpPrefix.TryParse(line.Trim(), out var prefix))
            {
                set.Add(prefix);
            }
        }
        return set;
    }

    private static void Write(string path, IEnumerable<IpPrefix> prefixes)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var lines = prefixes.Select(p => p.ToString()).Order(StringComparer.Ordinal).ToList();
        if (lines.Count == 0)
        {
            File.Delete(path);
            return;
        }
        string temporary = path + ".tmp";
        File.WriteAllLines(temporary, lines);
        File.Move(temporary, path, overwrite: true);
    }
}
