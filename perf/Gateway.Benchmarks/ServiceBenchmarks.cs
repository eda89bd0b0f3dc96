using BenchmarkDotNet.Attributes;
using Gateway.Datapath;
using Gateway.LoadBalancer;
using Gateway.Policy;

namespace Gateway.Benchmarks;

/// <summary>
/// Builds 10,000 ClusterIP services x 100 backends (1,000,000 backends, one Maglev table of
/// 16381 entries per service): service i has VIP 10.96.0.0 + i, port 80, backends 11.0.0.0 +
/// (i &lt;&lt; 7) + b on port 8080, selected by app=svc-i.
/// </summary>
internal static class ServiceWorkload
{
    public static ServiceLoadBalancer Build(int services, int backendsPerService, ServiceTableOptions? options = null)
    {
        var endpoints = new EndpointTable(new IdentityAllocator());
        var defs = new List<ServiceDefinition>(services);
        for (int i = 0; i < services; i++)
        {
            for (int b = 0; b < backendsPerService; b++)
            {
                endpoints.Add($"pod-{i}-{b}", "default", [IpAddress.FromV4(0x0B000000u | ((uint)i << 7) | (uint)b)], [new Label("k8s", "app", $"svc-{i}")]);
            }
            defs.Add(new ServiceDefinition("bench.yaml", 1, "default", $"svc-{i}", [IpAddress.FromV4(0x0A600000u | (uint)i)],
                [new ServicePortDefinition("http", 80, IpProtocol.Tcp, 8080, null)],
                new Dictionary<string, string> { ["app"] = $"svc-{i}" }, false, ServiceDefinition.DefaultAffinityTimeout));
        }
        return new ServiceLoadBalancer(ServiceTable.Compile(defs, endpoints, options));
    }
}

/// <summary>
/// The service lookup a conntrack miss pays: frontend map (VIP:port/proto) -> Maglev flow hash
/// -> Maglev table -> backend, with 10,000 services x 100 backends. Target (issue 15): at most
/// 60 ns and 0 B per lookup.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class ServiceLookupBenchmarks
{
    private const int Batch = 1024;
    private ServiceLoadBalancer _lb = null!;
    private FlowKey[] _flows = null!;

    /// <summary>
    /// Services the batch's flows go to: 16 (a node's busy services; tables stay in cache) or all
    /// 10,000 at random (each lookup touches a cold frontend slot, Maglev line and backend).
    /// </summary>
    [Params(16, 10_000)]
    public int ActiveServices { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _lb = ServiceWorkload.Build(10_000, 100);
        var rng = new Random(42);
        _flows = new FlowKey[Batch];
        for (int i = 0; i < Batch; i++)
        {
            _flows[i] = new FlowKey
            {
                Source = IpAddress.FromV4(0x0A000000u | (uint)rng.Next(1 << 20)),
                Destination = IpAddress.FromV4(0x0A600000u | (uint)rng.Next(ActiveServices)),
                SourcePort = (ushort)rng.Next(1024, 65536),
                DestinationPort = 80,
                Protocol = IpProtocol.Tcp,
            };
            if (_lb.Select(in _flows[i], 0, out var s) != ServiceLookup.Selected ||
                (s.BackendAddress.V4 >> 7 & 0xFFFF) != (_flows[i].Destination.V4 & 0xFFFF))
            {
                throw new InvalidOperationException($"flow {_flows[i]} did not reach its service's backends");
            }
        }
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int Select()
    {
        int sum = 0;
        var flows = _flows;
        for (int i = 0; i < flows.Length; i++)
        {
            _lb.Select(in flows[i], 0, out var s);
            sum += s.BackendPort;
        }
        return sum;
    }
}

/// <summary>DNAT in place with incremental checksum updates (IPv4 and IPv6 TCP, 1400-byte segments).</summary>
[MemoryDiagnoser]
[ShortRunJob]
public class ServiceNatBenchmarks
{
    private byte[] _v4 = null!, _v6 = null!;
    private PacketLayout _l4, _l6;
    private readonly IpAddress _b4 = IpAddress.Parse("10.0.1.1"), _b6 = IpAddress.Parse("fd00::1:1");
    private readonly IpAddress _c4 = IpAddress.Parse("10.0.1.2"), _c6 = IpAddress.Parse("fd00::1:2");
    private bool _flip;

    [GlobalSetup]
    public void Setup()
    {
        _v4 = new byte[1400];
        _v4[0] = 0x45;
        _v4[2] = 1400 >> 8;
        _v4[3] = 1400 & 0xFF;
        _v4[9] = IpProtocol.Tcp;
        _v4[32] = 0x50;
        _v6 = new byte[1400];
        _v6[0] = 0x60;
        _v6[4] = (1400 - 40) >> 8;
        _v6[5] = (1400 - 40) & 0xFF;
        _v6[6] = IpProtocol.Tcp;
        _v6[52] = 0x50;
        TransportChecksum.TryFill(_v4);
        TransportChecksum.TryFill(_v6);
        FlowParser.ParseIp(_v4, out _, out _l4);
        FlowParser.ParseIp(_v6, out _, out _l6);
    }

    [Benchmark]
    public bool DnatIpv4Tcp()
    {
        _flip = !_flip;
        return ServiceNat.RewriteDestination(_v4, in _l4, _flip ? _b4 : _c4, 8080);
    }

    [Benchmark]
    public bool DnatIpv6Tcp()
    {
        _flip = !_flip;
        return ServiceNat.RewriteDestination(_v6, in _l6, _flip ? _b6 : _c6, 8080);
    }
}

/// <summary>
/// The Maglev pick's modulo on its own, the saving of the lookup's fast modulo measured side by
/// side in one run (so machine load affects both alike): `hash % M` (a 32-bit division) against
/// <see cref="ServiceTable.MaglevMod"/> (two multiplications), M = 16381, over 1,024 flow hashes.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class MaglevModuloBenchmarks
{
    private const int Batch = 1024;
    private ServiceTable _table = null!;
    private uint[] _hashes = null!;
    private uint _size;

    [GlobalSetup]
    public void Setup()
    {
        _table = ServiceTable.Empty;
        _size = (uint)_table.MaglevSize;
        var rng = new Random(42);
        _hashes = new uint[Batch];
        for (int i = 0; i < Batch; i++)
        {
            _hashes[i] = (uint)rng.NextInt64(0, 1L << 32);
        }
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public uint Remainder()
    {
        uint sum = 0, m = _size;
        // Dependent chain, as in a lookup: the remainder feeds the next hash.
        foreach (uint h in _hashes)
        {
            sum += (h ^ sum) % m;
        }
        return sum;
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public uint FastModulo()
    {
        uint sum = 0;
        var table = _table;
        foreach (uint h in _hashes)
        {
            sum += table.MaglevMod(h ^ sum);
        }
        return sum;
    }
}
