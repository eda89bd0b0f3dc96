using System.Runtime.CompilerServices;
using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>
/// Maps addresses to security identities by longest prefix: endpoint addresses are host
/// prefixes (/32, /128), CIDRs named in policies are shorter prefixes with CIDR identities.
/// An address that matches nothing is `world` (2), as in Cilium. Lookups allocate nothing.
/// </summary>
public sealed class IpCache
{
    private readonly LpmTable<uint> _table = new();

    public int Count => _table.Count;

    /// <summary>Maps a prefix to an identity (one writer at a time; lookups may run concurrently).</summary>
    public void Set(IpPrefix prefix, uint identity) => _table.Set(prefix, identity);

    public bool Remove(IpPrefix prefix) => _table.Remove(prefix);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Lookup(IpAddress address) => _table.TryLookup(address, out uint id) ? id : ReservedIdentity.World;

    /// <summary>Network-order address bytes (4 or 16); other lengths give world.</summary>
    public uint Lookup(ReadOnlySpan<byte> networkOrderAddress) =>
        _table.TryLookup(networkOrderAddress, out uint id) ? id : ReservedIdentity.World;

    public bool TryLookup(IpAddress address, out IpPrefix matched, out uint identity) =>
        _table.TryLookup(address, out matched, out identity);

    public IEnumerable<KeyValuePair<IpPrefix, uint>> Entries => _table.Entries;
}
