using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Gateway.Datapath;

namespace Gateway.LoadBalancer;

/// <summary>What the load balancer made of a packet's destination.</summary>
public enum ServiceLookup : byte
{
    /// <summary>The destination is no service frontend: forward as is.</summary>
    NotService = 0,
    /// <summary>A backend was chosen (<see cref="ServiceSelection"/>).</summary>
    Selected = 1,
    /// <summary>A frontend without backends: drop with NO_SERVICE (Cilium drop reason 158).</summary>
    NoBackends = 2,
}

/// <summary>The outcome of a service lookup: the frontend, the chosen backend and where it came from.</summary>
public struct ServiceSelection
{
    public int FrontendId;
    /// <summary>Index into <see cref="ServiceTable.Backends"/>.</summary>
    public int BackendIndex;
    public IpAddress ServiceAddress;
    public ushort ServicePort;
    public IpAddress BackendAddress;
    public ushort BackendPort;
    public byte Protocol;
    public ushort RevNatIndex;
    public uint BackendIdentity;
    /// <summary>True when session affinity chose the backend.</summary>
    public bool FromAffinity;
    /// <summary>"namespace/name" of the service (Hubble's destination_service); no allocation.</summary>
    public string? ServiceName;
}

/// <summary>
/// The service load balancer of one node: the current <see cref="ServiceTable"/> (replaced whole
/// on reload), client-IP affinity that outlives reloads, and per-service selection counters
/// (gateway_service_backend_selections_total{service}). <see cref="Select"/> is what the
/// datapath calls on a conntrack miss; it allocates nothing and takes no lock unless the
/// service has session affinity (one short shard lock).
/// </summary>
public sealed class ServiceLoadBalancer
{
    private volatile State _state;

    public ServiceLoadBalancer(ServiceTable table, int affinityCapacity = 65536)
    {
        ArgumentNullException.ThrowIfNull(table);
        Affinity = new SessionAffinityTable(affinityCapacity);
        _state = new State(table, new long[table.Services.Count]);
    }

    public ServiceTable Table => _state.Table;

    public SessionAffinityTable Affinity { get; }

    /// <summary>Swaps in a new table; selection counts carry over by service name.</summary>
    public void Replace(ServiceTable next)
    {
        ArgumentNullException.ThrowIfNull(next);
        var old = _state;
        var counts = new long[next.Services.Count];
        var byName = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < old.Table.Services.Count; i++)
        {
            byName[old.Table.Services[i].QualifiedName] = i;
        }
        for (int i = 0; i < counts.Length; i++)
        {
            if (byName.TryGetValue(next.Services[i].QualifiedName, out int o))
            {
                counts[i] = Interlocked.Read(ref old.Selections[o]);
            }
        }
        _state = new State(next, counts);
    }

    /// <summary>Backend selections per service ("namespace/name"), for metrics.</summary>
    public IEnumerable<(string Service, long Selections)> SelectionCounts()
    {
        var s = _state;
        for (int i = 0; i < s.Table.Services.Count; i++)
        {
            yield return (s.Table.Services[i].QualifiedName, Interlocked.Read(ref s.Selections[i]));
        }
    }

    /// <summary>
    /// For the first packet of a flow (no conntrack entry): is its destination a service, and if
    /// so which backend serves it. TCP and UDP only.
    /// </summary>
    public ServiceLookup Select(in FlowKey key, long nowNs, out ServiceSelection selection)
    {
        selection = default;
        if (key.Protocol is not (IpProtocol.Tcp or IpProtocol.Udp))
        {
            return ServiceLookup.NotService;
        }
        var state = _state;
        var table = state.Table;
        ref readonly var fe = ref table.TryFindFrontend(key.Destination, key.DestinationPort, key.Protocol, out bool found);
        if (!found)
        {
            return ServiceLookup.NotService;
        }
        selection.FrontendId = fe.Id;
        selection.ServiceAddress = fe.Address;
        selection.ServicePort = fe.Port;
        selection.Protocol = fe.Protocol;
        selection.RevNatIndex = fe.RevNatIndex;
        selection.ServiceName = fe.ServiceName;
        if (fe.BackendCount == 0)
        {
            return ServiceLookup.NoBackends;
        }
        int pos = -1;
        if (fe.AffinityTimeoutNs != 0 &&
            Affinity.TryGet(key.Source, fe.Address, fe.Port, fe.Protocol, nowNs, fe.AffinityTimeoutNs, out var prev, out ushort prevPort))
        {
            pos = table.IndexOfBackend(in fe, prev, prevPort);
            selection.FromAffinity = pos >= 0;
        }
        if (pos < 0)
        {
            pos = table.IsRandom
                ? System.Random.Shared.Next(fe.BackendCount)
                : table.MaglevPick(in fe, FlowHash(in key, table));
        }
        ref readonly var b = ref table.BackendAt(in fe, pos, out int backendIndex);
        selection.BackendIndex = backendIndex;
        selection.BackendAddress = b.Address;
        selection.BackendPort = b.Port;
        selection.BackendIdentity = b.Identity;
        if (fe.AffinityTimeoutNs != 0)
        {
            Affinity.Set(key.Source, fe.Address, fe.Port, fe.Protocol, b.Address, b.Port, nowNs);
        }
        Interlocked.Increment(ref state.Selections[fe.ServiceIndex]);
        return ServiceLookup.Selected;
    }

    /// <summary>
    /// The Maglev flow hash, as Cilium's hash_from_tuple_v4/v6: Jenkins hash of the client address,
    /// both ports and the protocol, words read as little-endian from network order. The service
    /// address is left out, so a client flow hashes the same on every node.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint FlowHash(in FlowKey key, ServiceTable table)
    {
        uint ports = ((uint)BinaryPrimitives.ReverseEndianness(key.DestinationPort) << 16) | BinaryPrimitives.ReverseEndianness(key.SourcePort);
        if (!key.Source.IsV6)
        {
            return JHash.Hash3Words(BinaryPrimitives.ReverseEndianness(key.Source.V4), ports, key.Protocol, table.FlowHashSeed4);
        }
        UInt128 a = key.Source.V6;
        ulong hi = (ulong)(a >> 64), lo = (ulong)a;
        return JHash.HashV6(
            BinaryPrimitives.ReverseEndianness((uint)(hi >> 32)), BinaryPrimitives.ReverseEndianness((uint)hi),
            BinaryPrimitives.ReverseEndianness((uint)(lo >> 32)), BinaryPrimitives.ReverseEndianness((uint)lo),
            ports, key.Protocol, table.FlowHashSeed6);
    }

    private sealed class State(ServiceTable table, long[] selections)
    {
        public readonly ServiceTable Table = table;
        public readonly long[] Selections = selections;
    }
}
