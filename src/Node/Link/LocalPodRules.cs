using Gateway.Datapath;

namespace Gateway.Node.Link;

/// <summary>
/// Policy routing that sends traffic between two pods of this node through the tunnel device
/// while the node has services (docs/services.md, "Backends on the client's own node"). Pods sit
/// behind veth pairs with a /32 (or /128) route each, so the kernel would carry a local backend's
/// replies straight to the client, past the reverse NAT. For every pod CIDR P of the node:
/// <code>
/// ip rule add pref 4240 from P to P iif lo lookup main     # what Gateway hands back to the kernel
/// ip rule add pref 4241 from P to P lookup 4242            # everything else a pod sends to a pod
/// ip route replace P dev IFACE table 4242
/// </code>
/// Gateway hands the packets back through a raw socket (locally generated, <c>iif lo</c>), so the
/// first rule lets them reach the pod by the main table's veth routes. The rules are removed when
/// the node stops; left behind by a crash they are harmless (table 4242's routes go with the device,
/// and the lookup falls through to the main table).
/// </summary>
internal sealed class LocalPodRules(string device)
{
    public const int Table = 4242;
    public const int ReturnPreference = 4240;
    public const int TunnelPreference = 4241;

    private readonly HashSet<IpPrefix> _installed = [];

    public IReadOnlyCollection<IpPrefix> Installed => _installed;

    /// <summary>Makes the rules and routes exactly those of <paramref name="wanted"/>. Throws
    /// <see cref="LinkException"/> when one cannot be set.</summary>
    public void Reconcile(IEnumerable<IpPrefix> wanted)
    {
        var next = wanted.ToHashSet();
        foreach (var prefix in _installed.Except(next).ToList())
        {
            Delete(prefix);
            _installed.Remove(prefix);
        }
        foreach (var prefix in next.Except(_installed).ToList())
        {
            // Never twice: rules, unlike routes, have no "replace" (an earlier run may have left them).
            Delete(prefix);
            string family = prefix.Address.IsV6 ? "-6" : "-4";
            IpCommand.Run($"{family} route replace {prefix} dev {device} table {Table}");
            IpCommand.Run($"{family} rule add pref {ReturnPreference} from {prefix} to {prefix} iif lo lookup main");
            IpCommand.Run($"{family} rule add pref {TunnelPreference} from {prefix} to {prefix} lookup {Table}");
            _installed.Add(prefix);
        }
    }

    /// <summary>Removes every rule and route this node installed.</summary>
    public void Clear() => Reconcile([]);

    private void Delete(IpPrefix prefix)
    {
        string family = prefix.Address.IsV6 ? "-6" : "-4";
        IpCommand.Run($"{family} rule del pref {ReturnPreference} from {prefix} to {prefix} iif lo lookup main", check: false);
        IpCommand.Run($"{family} rule del pref {TunnelPreference} from {prefix} to {prefix} lookup {Table}", check: false);
        IpCommand.Run($"{family} route del {prefix} dev {device} table {Table}", check: false);
    }
}
