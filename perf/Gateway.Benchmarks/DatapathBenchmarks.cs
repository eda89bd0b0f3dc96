using BenchmarkDotNet.Attributes;
using Gateway.Datapath;

namespace Gateway.Benchmarks;

/// <summary>One-pass flow-key parse per packet (goal: &lt;= 15 ns, 0 B).</summary>
[MemoryDiagnoser]
public class DatapathFlowKeyBenchmarks
{
    private byte[] _tcp4 = [];
    private byte[] _udp6Ext = [];
    private byte[] _vxlan = [];

    [GlobalSetup]
    public void Setup()
    {
        _tcp4 = Frames.Ethernet(Frames.Ipv4(0x0A000105, 0x0A000207, IpProtocol.Tcp, Frames.Tcp(41000, 443, 0x10, 1400)));
        _udp6Ext = Frames.Ethernet(Frames.Ipv6WithDestinationOptions(Frames.Udp(5353, 53, 100)));
        byte[] inner = Frames.Ethernet(Frames.Ipv4(0x0A000105, 0x0A000207, IpProtocol.Udp, Frames.Udp(40000, 53, 60)));
        byte[] vxlan = new byte[8 + inner.Length];
        Vxlan.Write(vxlan, 4242);
        inner.CopyTo(vxlan, 8);
        _vxlan = Frames.Ethernet(Frames.Ipv4(0xC0A80001, 0xC0A80002, IpProtocol.Udp, Frames.UdpWith(50000, 8472, vxlan)));
    }

    [Benchmark(Description = "Ethernet/IPv4/TCP")]
    public int EthernetIpv4Tcp()
    {
        FlowParser.ParseEthernet(_tcp4, out FlowKey key);
        return key.DestinationPort;
    }

    [Benchmark(Description = "Ethernet/IPv6/DestOpts/UDP")]
    public int EthernetIpv6ExtUdp()
    {
        FlowParser.ParseEthernet(_udp6Ext, out FlowKey key);
        return key.DestinationPort;
    }

    [Benchmark(Description = "VXLAN inner only (UDP payload)")]
    public int VxlanPayloadOnly()
    {
        FlowParser.ParseVxlanPayload(_vxlan.AsSpan(42), out uint vni, out FlowKey inner, out _);
        return inner.DestinationPort + (int)vni;
    }

    [Benchmark(Description = "VXLAN outer+inner")]
    public int VxlanInner()
    {
        FlowParser.ParseVxlan(LinkType.Ethernet, _vxlan, out _, out uint vni, out FlowKey inner);
        return inner.DestinationPort + (int)vni;
    }
}

/// <summary>Internet checksum throughput.</summary>
[MemoryDiagnoser]
public class DatapathChecksumBenchmarks
{
    private byte[] _data = [];

    [Params(64, 1500, 9000)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = new byte[Size];
        new Random(1).NextBytes(_data);
    }

    [Benchmark]
    public ushort Checksum() => InternetChecksum.Compute(_data);
}

/// <summary>Longest-prefix match over 100k random prefixes (IPv4 and IPv6 mixed).</summary>
[MemoryDiagnoser]
public class DatapathLpmBenchmarks
{
    private const int Lookups = 1024;
    private LpmTable<int> _table = null!;
    private IpAddress[] _v4 = [];
    private IpAddress[] _v6 = [];

    [GlobalSetup]
    public void Setup()
    {
        var r = new Random(1);
        _table = new LpmTable<int>();
        for (int i = 0; _table.Count < 100_000; i++)
        {
            // 80% IPv4 (/8../32), 20% IPv6 (/16../128), as an allowed-IPs/ipcache mix.
            IpPrefix p = r.Next(5) != 0
                ? new IpPrefix(IpAddress.FromV4((uint)r.NextInt64(0, uint.MaxValue)), r.Next(8, 33))
                : new IpPrefix(IpAddress.FromV6(new UInt128((ulong)r.NextInt64(), (ulong)r.NextInt64())), r.Next(16, 129));
            _table.Set(p, i);
        }
        // Half the lookups hit an inserted prefix's range, half are random.
        var entries = _table.Entries.ToArray();
        _v4 = Enumerable.Range(0, Lookups).Select(i => i % 2 == 0
            ? entries.Where(e => e.Key.Address.IsV4).ElementAt(r.Next(1000)).Key.Address
            : IpAddress.FromV4((uint)r.NextInt64(0, uint.MaxValue))).ToArray();
        _v6 = Enumerable.Range(0, Lookups).Select(i => i % 2 == 0
            ? entries.Where(e => e.Key.Address.IsV6).ElementAt(r.Next(1000)).Key.Address
            : IpAddress.FromV6(new UInt128((ulong)r.NextInt64(), (ulong)r.NextInt64()))).ToArray();
    }

    [Benchmark(OperationsPerInvoke = Lookups, Description = "LPM lookup IPv4 (100k prefixes)")]
    public int LookupV4()
    {
        int hits = 0;
        foreach (IpAddress a in _v4)
        {
            if (_table.TryLookup(a, out int v)) hits += v;
        }
        return hits;
    }

    [Benchmark(OperationsPerInvoke = Lookups, Description = "LPM lookup IPv6 (100k prefixes)")]
    public int LookupV6()
    {
        int hits = 0;
        foreach (IpAddress a in _v6)
        {
            if (_table.TryLookup(a, out int v)) hits += v;
        }
        return hits;
    }
}

/// <summary>Frame builders for the benchmarks (setup only).</summary>
internal static class Frames
{
    public static byte[] Ethernet(byte[] ip)
    {
        var f = new byte[14 + ip.Length];
        LinkLayer.WriteEthernet(f, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], (ip[0] >> 4) == 6 ? EtherType.Ipv6 : EtherType.Ipv4);
        ip.CopyTo(f, 14);
        return f;
    }

    public static byte[] Ipv4(uint src, uint dst, byte protocol, byte[] l4)
    {
        var p = new byte[20 + l4.Length];
        l4.CopyTo(p, 20);
        new Ipv4Header { TotalLength = (ushort)p.Length, TimeToLive = 64, Protocol = protocol, Source = src, Destination = dst }.Write(p);
        TransportChecksum.TryFill(p);
        return p;
    }

    public static byte[] Ipv6WithDestinationOptions(byte[] udp)
    {
        var payload = new byte[8 + udp.Length];
        payload[0] = IpProtocol.Udp;
        payload[2] = 1;
        payload[3] = 4;
        udp.CopyTo(payload, 8);
        var p = new byte[40 + payload.Length];
        new Ipv6Header { PayloadLength = (ushort)payload.Length, NextHeader = IpProtocol.DestinationOptions, HopLimit = 64, Source = IpAddress.Parse("fd00::1").V6, Destination = IpAddress.Parse("fd00::2").V6 }.Write(p);
        payload.CopyTo(p, 40);
        return p;
    }

    public static byte[] Tcp(ushort sport, ushort dport, byte flags, int payload)
    {
        var t = new byte[20 + payload];
        new TcpHeader { SourcePort = sport, DestinationPort = dport, Flags = flags, Window = 512 }.Write(t);
        return t;
    }

    public static byte[] Udp(ushort sport, ushort dport, int payload) => UdpWith(sport, dport, new byte[payload]);

    public static byte[] UdpWith(ushort sport, ushort dport, byte[] payload)
    {
        var u = new byte[8 + payload.Length];
        new UdpHeader { SourcePort = sport, DestinationPort = dport, DatagramLength = (ushort)u.Length }.Write(u);
        payload.CopyTo(u, 8);
        return u;
    }
}
