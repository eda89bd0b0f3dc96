using System.Numerics;
using System.Runtime.CompilerServices;
using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.LoadBalancer;

/// <summary>How a backend is chosen for a new flow.</summary>
public enum BackendAlgorithm : byte
{
    /// <summary>Consistent: table[hash(client address, ports, protocol) mod M]; every node agrees.</summary>
    Maglev = 0,
    /// <summary>A uniformly random backend per new flow (Cilium's `random`).</summary>
    Random = 1,
}

/// <summary>Compilation settings for a <see cref="ServiceTable"/>.</summary>
public sealed record ServiceTableOptions
{
    public BackendAlgorithm Algorithm { get; init; } = BackendAlgorithm.Maglev;
    /// <summary>Maglev table size M (a prime from <see cref="MaglevTable.SupportedSizes"/>).</summary>
    public int MaglevTableSize { get; init; } = MaglevTable.DefaultSize;
    /// <summary>Base64 of 12 bytes: Maglev permutation seed and flow-hash seeds.</summary>
    public string HashSeed { get; init; } = MaglevTable.DefaultHashSeed;
}

/// <summary>
/// A service frontend (Cilium's lb4_services / lb6_services entry with backend slot 0): one
/// VIP:port/protocol, its backends as a slice of <see cref="ServiceTable.Backends"/>, and
/// its reverse-NAT index (Cilium's rev_nat_index; 1-based, 0 = none).
/// </summary>
public struct ServiceFrontend
{
    public IpAddress Address;
    public ushort Port;
    public byte Protocol;
    internal bool Used;
    public ushort RevNatIndex;
    /// <summary>The frontend id (0..FrontendCount-1).</summary>
    public int Id;
    /// <summary>Index of the service in <see cref="ServiceTable.Services"/>.</summary>
    public int ServiceIndex;
    /// <summary>Index of the port in the service's spec.ports.</summary>
    public int PortIndex;
    /// <summary>First entry of this frontend's backend list in <see cref="ServiceTable.FrontendBackends"/>.</summary>
    public int BackendStart;
    public int BackendCount;
    /// <summary>Start of this frontend's Maglev table (M entries) in the shared slab; -1 without backends.</summary>
    public long MaglevOffset;
    /// <summary>sessionAffinity: ClientIP timeout in nanoseconds; 0 = no affinity.</summary>
    public long AffinityTimeoutNs;
    /// <summary>"namespace/name" of the service (flow events, metrics): kept here so the datapath
    /// names the service without another lookup.</summary>
    public string? ServiceName;
}

/// <summary>A backend (Cilium's lb4_backends / lb6_backends entry): address, port, protocol and the endpoint behind it.</summary>
public readonly record struct ServiceBackend(IpAddress Address, ushort Port, byte Protocol, uint Identity, string EndpointName)
{
    /// <summary>The Maglev name: "address:port" ("[v6]:port").</summary>
    public string Name => ServiceLoader.Format(Address, Port);
}

/// <summary>A reverse-NAT entry (Cilium's lb4_reverse_nat / lb6_reverse_nat): the VIP:port replies appear to come from.</summary>
public readonly record struct ReverseNatEntry(IpAddress Address, ushort Port);

/// <summary>
/// The compiled service maps, immutable once built: a new table is compiled on every reload and
/// swapped in whole. Frontends live in an open-addressed array keyed by VIP:port/protocol (both
/// families in one table: <see cref="IpAddress"/> keeps them distinct), backends are shared
/// between frontends, and every frontend with backends owns M entries of one Maglev slab holding
/// positions in its backend list. Lookups allocate nothing and take no locks.
/// </summary>
public sealed class ServiceTable
{
    private readonly ServiceFrontend[] _slots;
    private readonly int _slotMask;
    private readonly int[] _frontendSlots;
    private readonly ServiceBackend[] _backends;
    private readonly int[] _frontendBackends;
    private readonly ushort[] _maglev;
    private readonly ReverseNatEntry[] _reverseNat;
    private readonly Dictionary<(int Frontend, IpAddress Address, ushort Port), int> _members;

    private ServiceTable(IReadOnlyList<ServiceDefinition> services, ServiceTableOptions options, ServiceFrontend[] slots,
        int[] frontendSlots, ServiceBackend[] backends, int[] frontendBackends, ushort[] maglev, ReverseNatEntry[] reverseNat,
        Dictionary<(int, IpAddress, ushort), int> members, uint jhash0, uint jhash1)
    {
        Services = services;
        Options = options;
        _slots = slots;
        _slotMask = slots.Length - 1;
        _frontendSlots = frontendSlots;
        _backends = backends;
        _frontendBackends = frontendBackends;
        _maglev = maglev;
        _reverseNat = reverseNat;
        _members = members;
        FlowHashSeed4 = jhash0;
        FlowHashSeed6 = jhash1;
        MaglevSize = options.MaglevTableSize;
        _maglevMultiplier = ulong.MaxValue / (uint)MaglevSize + 1;
        IsRandom = options.Algorithm == BackendAlgorithm.Random;
    }

    // Lemire's fast modulo (as dotnet/runtime's HashHelpers.FastMod): two multiplications instead
    // of a 32-bit division on every Maglev pick; exact for any uint value and M < 2^31.
    private readonly ulong _maglevMultiplier;

    /// <summary><see cref="Options"/>.Algorithm is Random (read once per lookup without a dereference).</summary>
    internal bool IsRandom { get; }

    /// <summary><paramref name="value"/> mod <see cref="MaglevSize"/>, without a division.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal uint MaglevMod(uint value) => (uint)(((((_maglevMultiplier * value) >> 32) + 1) * (uint)MaglevSize) >> 32);

    /// <summary>An empty table (no services).</summary>
    public static ServiceTable Empty { get; } = Compile([], null, null);

    public IReadOnlyList<ServiceDefinition> Services { get; }
    public ServiceTableOptions Options { get; }
    public int MaglevSize { get; }
    internal uint FlowHashSeed4 { get; }
    internal uint FlowHashSeed6 { get; }

    /// <summary>Number of frontends (VIP:port/protocol).</summary>
    public int FrontendCount => _frontendSlots.Length;

    /// <summary>Frontend ids are 0..FrontendCount-1 in service, VIP, port order.</summary>
    public ref readonly ServiceFrontend Frontend(int id) => ref _slots[_frontendSlots[id]];

    public ReadOnlySpan<ServiceBackend> Backends => _backends;

    /// <summary>Per frontend, its backends' indices into <see cref="Backends"/> (in Maglev name order).</summary>
    public ReadOnlySpan<int> FrontendBackends => _frontendBackends;

    public ReadOnlySpan<ReverseNatEntry> ReverseNat => _reverseNat;

    public ServiceDefinition ServiceOf(in ServiceFrontend frontend) => Services[frontend.ServiceIndex];

    /// <summary>Backend <paramref name="i"/> (0..BackendCount-1) of a frontend.</summary>
    public ref readonly ServiceBackend BackendOf(in ServiceFrontend frontend, int i) => ref _backends[_frontendBackends[frontend.BackendStart + i]];

    internal ReadOnlySpan<ushort> MaglevSlab => _maglev;

    /// <summary>Finds the frontend of VIP:port/protocol; the returned reference is valid for this table's lifetime.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref readonly ServiceFrontend TryFindFrontend(IpAddress address, ushort port, byte protocol, out bool found)
    {
        int slot = (int)Hash(address, port, protocol) & _slotMask;
        var slots = _slots;
        while (true)
        {
            ref var s = ref slots[slot];
            if (!s.Used)
            {
                found = false;
                return ref s;
            }
            if (s.Port == port && s.Protocol == protocol && s.Address == address)
            {
                found = true;
                return ref s;
            }
            slot = (slot + 1) & _slotMask;
        }
    }

    /// <summary>True if VIP:port/protocol exists and has this backend (reloads keep flows to such backends).</summary>
    public bool HasBackend(IpAddress vip, ushort port, byte protocol, IpAddress backend, ushort backendPort)
    {
        ref readonly var fe = ref TryFindFrontend(vip, port, protocol, out bool found);
        return found && IndexOfBackend(in fe, backend, backendPort) >= 0;
    }

    /// <summary>Position of a backend address:port in a frontend's backend list, or -1 (affinity checks).</summary>
    internal int IndexOfBackend(in ServiceFrontend frontend, IpAddress address, ushort port)
    {
        return _members.TryGetValue((frontend.Id, address, port), out int i) ? i : -1;
    }

    /// <summary>The Maglev pick of a frontend with backends: position in its backend list.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int MaglevPick(in ServiceFrontend frontend, uint flowHash) =>
        _maglev[frontend.MaglevOffset + MaglevMod(flowHash)];

    /// <summary>The backend at position <paramref name="pos"/> of a frontend's list (no span or bounds
    /// check beyond the array's own).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref readonly ServiceBackend BackendAt(in ServiceFrontend frontend, int pos, out int index)
    {
        index = _frontendBackends[frontend.BackendStart + pos];
        return ref _backends[index];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Hash(IpAddress address, ushort port, byte protocol)
    {
        UInt128 v = address.V6;
        ulong h = (ulong)v ^ ((ulong)(v >> 64) * 0x9E3779B97F4A7C15UL) ^ ((ulong)port << 40) ^ ((ulong)protocol << 32);
        h *= 0xBF58476D1CE4E5B9UL;
        return (uint)(h >> 32);
    }

    /// <summary>
    /// Compiles services against the endpoints: each service port on each clusterIP becomes a
    /// frontend whose backends are the workload endpoints of the service's namespace that carry
    /// every selector label, one per address of the VIP's family, on the target port (a named
    /// target port is looked up in each endpoint's ports; an endpoint without it is left out).
    /// </summary>
    public static ServiceTable Compile(IReadOnlyList<ServiceDefinition> services, EndpointTable? endpoints, ServiceTableOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        options ??= new ServiceTableOptions();
        if (!MaglevTable.SupportedSizes.Contains(options.MaglevTableSize))
        {
            throw new ArgumentException($"Maglev table size {options.MaglevTableSize} is not one of {string.Join(", ", MaglevTable.SupportedSizes)}");
        }
        var (murmur, jhash0, jhash1) = MaglevTable.DecodeSeed(options.HashSeed);
        int m = options.MaglevTableSize;

        var frontends = new List<ServiceFrontend>();
        var frontendBackendLists = new List<int[]>();
        var backends = new List<ServiceBackend>();
        var backendIds = new Dictionary<(IpAddress, ushort, byte), int>();
        var index = endpoints is null ? null : new EndpointIndex(endpoints);
        for (int si = 0; si < services.Count; si++)
        {
            var svc = services[si];
            var members = SelectEndpoints(svc, index);
            foreach (var vip in svc.ClusterIps)
            {
                for (int pi = 0; pi < svc.Ports.Count; pi++)
                {
                    var port = svc.Ports[pi];
                    var list = new List<(string Name, int Id)>();
                    foreach (var ep in members)
                    {
                        ushort target = port.TargetPort;
                        if (port.TargetPortName is not null && !ep.TryGetPort(port.TargetPortName, port.Protocol, out target))
                        {
                            continue;
                        }
                        foreach (var ip in ep.Ips)
                        {
                            if (ip.IsV6 != vip.IsV6)
                            {
                                continue;
                            }
                            var key = (ip, target, port.Protocol);
                            if (!backendIds.TryGetValue(key, out int id))
                            {
                                id = backends.Count;
                                backends.Add(new ServiceBackend(ip, target, port.Protocol, ep.Identity.Id, ep.QualifiedName));
                                backendIds[key] = id;
                            }
                            list.Add((backends[id].Name, id));
                        }
                    }
                    if (list.Count > Math.Min(m, ushort.MaxValue))
                    {
                        throw new ServiceLoadException(svc.File, svc.Line,
                            $"{svc.File} (line {svc.Line}): service {svc.QualifiedName} has {list.Count} backends, more than the Maglev table size {m} allows");
                    }
                    list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
                    frontendBackendLists.Add(list.Select(x => x.Id).ToArray());
                    frontends.Add(new ServiceFrontend
                    {
                        Address = vip,
                        Port = port.Port,
                        Protocol = port.Protocol,
                        Used = true,
                        ServiceIndex = si,
                        ServiceName = svc.QualifiedName,
                        PortIndex = pi,
                        BackendCount = list.Count,
                        AffinityTimeoutNs = svc.ClientIpAffinity ? (long)svc.AffinityTimeout.TotalSeconds * 1_000_000_000L : 0,
                    });
                }
            }
        }
        if (frontends.Count >= ushort.MaxValue)
        {
            throw new ArgumentException($"{frontends.Count} service frontends exceed the 65534 reverse-NAT indices");
        }

        int withBackends = frontendBackendLists.Count(l => l.Length > 0);
        if ((long)withBackends * m > Array.MaxLength)
        {
            throw new ArgumentException($"{withBackends} frontends with backends need more than one Maglev slab of {Array.MaxLength} entries; use a smaller table size");
        }
        var maglev = new ushort[(long)withBackends * m];
        var flat = new int[frontendBackendLists.Sum(l => l.Length)];
        var reverseNat = new ReverseNatEntry[frontends.Count + 1];
        long next = 0;
        int start = 0;
        var offsets = new long[frontends.Count];
        for (int f = 0; f < frontends.Count; f++)
        {
            var ids = frontendBackendLists[f];
            ids.CopyTo(flat, start);
            var fe = frontends[f];
            fe.BackendStart = start;
            fe.RevNatIndex = (ushort)(f + 1);
            fe.Id = f;
            fe.MaglevOffset = ids.Length > 0 ? next : -1;
            offsets[f] = fe.MaglevOffset;
            if (ids.Length > 0)
            {
                next += m;
            }
            start += ids.Length;
            frontends[f] = fe;
            reverseNat[f + 1] = new ReverseNatEntry(fe.Address, fe.Port);
        }
        // The tables are independent: build them in parallel (10,000 services take seconds alone).
        Parallel.For(0, frontends.Count, f =>
        {
            var ids = frontendBackendLists[f];
            if (ids.Length == 0)
            {
                return;
            }
            var names = new string[ids.Length];
            for (int i = 0; i < ids.Length; i++)
            {
                names[i] = backends[ids[i]].Name;
            }
            MaglevTable.Fill(names, maglev.AsSpan(checked((int)offsets[f]), m), murmur);
        });

        int size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, frontends.Count * 2));
        var slots = new ServiceFrontend[size];
        var frontendSlots = new int[frontends.Count];
        var memberMap = new Dictionary<(int, IpAddress, ushort), int>();
        for (int f = 0; f < frontends.Count; f++)
        {
            var fe = frontends[f];
            int slot = (int)Hash(fe.Address, fe.Port, fe.Protocol) & (size - 1);
            while (slots[slot].Used)
            {
                slot = (slot + 1) & (size - 1);
            }
            slots[slot] = fe;
            frontendSlots[f] = slot;
            for (int i = 0; i < fe.BackendCount; i++)
            {
                var b = backends[flat[fe.BackendStart + i]];
                memberMap[(f, b.Address, b.Port)] = i;
            }
        }
        return new ServiceTable(services, options, slots, frontendSlots, backends.ToArray(), flat, maglev, reverseNat, memberMap, jhash0, jhash1);
    }

    /// <summary>The workload endpoints of the service's namespace whose labels include every selector label.</summary>
    internal static List<Endpoint> SelectEndpoints(ServiceDefinition svc, EndpointIndex? index)
    {
        var result = new List<Endpoint>();
        if (svc.Selector is null || index is null)
        {
            return result;
        }
        var wanted = svc.Selector.Select(kv =>
        {
            var (src, key) = Label.SplitSource(kv.Key, LabelSources.K8s);
            return new Label(src, key, kv.Value);
        }).ToArray();
        IEnumerable<Endpoint> candidates = wanted.Length == 0
            ? index.InNamespace(svc.Namespace)
            : index.WithLabel(svc.Namespace, wanted[0]);
        foreach (var ep in candidates)
        {
            // A not-ready endpoint (EndpointSlice conditions.ready false) is no backend for new flows.
            if (ep.Ready && wanted.All(ep.Labels.Contains))
            {
                result.Add(ep);
            }
        }
        return result;
    }

    /// <summary>Workload endpoints by namespace and by (namespace, label), so compiling is not services x endpoints.</summary>
    internal sealed class EndpointIndex
    {
        private readonly Dictionary<string, List<Endpoint>> _byNamespace = new(StringComparer.Ordinal);
        private readonly Dictionary<(string, Label), List<Endpoint>> _byLabel = new();

        public EndpointIndex(EndpointTable endpoints)
        {
            foreach (var ep in endpoints.All)
            {
                if (!ep.IsWorkload || ep.Namespace is null)
                {
                    continue;
                }
                Add(_byNamespace, ep.Namespace, ep);
                foreach (var l in ep.Labels)
                {
                    Add(_byLabel, (ep.Namespace, l), ep);
                }
            }
        }

        private static void Add<TKey>(Dictionary<TKey, List<Endpoint>> map, TKey key, Endpoint ep) where TKey : notnull
        {
            if (!map.TryGetValue(key, out var list))
            {
                map[key] = list = [];
            }
            list.Add(ep);
        }

        public IEnumerable<Endpoint> InNamespace(string ns) => _byNamespace.GetValueOrDefault(ns) ?? [];

        public IEnumerable<Endpoint> WithLabel(string ns, Label label) => _byLabel.GetValueOrDefault((ns, label)) ?? [];
    }
}
