using System.Buffers.Binary;
using Gateway.Crypto;
using Gateway.Datapath;

namespace Gateway.Tunnel.Tests;

/// <summary>A TimeProvider the tests move by hand: monotonic timestamps in ns and a UTC clock
/// that advance together. Nothing ever sleeps.</summary>
public sealed class FakeClock : TimeProvider
{
    private long _nanos = 1_000 * WireGuardConstants.Second; // arbitrary, far from zero
    private DateTimeOffset _utc = new(2026, 11, 28, 12, 0, 0, TimeSpan.Zero);
    private readonly object _gate = new();

    public override long TimestampFrequency => 1_000_000_000L;
    public override long GetTimestamp() { lock (_gate) return _nanos; }
    public override DateTimeOffset GetUtcNow() { lock (_gate) return _utc; }

    public void Advance(TimeSpan by) => AdvanceNanos(by.Ticks * 100);

    public void AdvanceNanos(long nanos)
    {
        lock (_gate)
        {
            _nanos += nanos;
            _utc = _utc.AddTicks(nanos / 100);
        }
    }
}

/// <summary>Deterministic randomness (seeded); <see cref="FixedJitter"/> pins the timer jitter
/// draws: 4-byte fills return it when set.</summary>
public sealed class FakeRandom(int seed = 1) : IRandomSource
{
    private readonly Random _random = new(seed);
    public uint? FixedJitter { get; set; }
    private int _fourByteCalls;

    public void Fill(Span<byte> destination)
    {
        lock (_random)
        {
            // Indices and jitter both use 4-byte draws; a fixed jitter would also fix indices,
            // so alternate: jitter draws are recognisable only by size, keep indices unique by
            // mixing in a counter.
            if (destination.Length == 4 && FixedJitter is uint j)
            {
                _fourByteCalls++;
                // Values ≡ j (mod 334) but distinct, so session indices stay unique.
                BinaryPrimitives.WriteUInt32LittleEndian(destination, j + 334u * (uint)_fourByteCalls);
                return;
            }
            _random.NextBytes(destination);
        }
    }
}

/// <summary>Collects everything the engine emits through ITunnelOutput.</summary>
public sealed class CapturingOutput : ITunnelOutput
{
    public readonly List<(IpEndpoint To, byte[] Data)> Sent = new();
    public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram)
    {
        lock (Sent) Sent.Add((destination, datagram.ToArray()));
    }
    public List<(IpEndpoint To, byte[] Data)> Drain()
    {
        lock (Sent)
        {
            var copy = Sent.ToList();
            Sent.Clear();
            return copy;
        }
    }
    public IEnumerable<byte[]> OfType(MessageType type) => Sent.Where(s => Messages.Classify(s.Data) == type).Select(s => s.Data);
}

public sealed class Node : IDisposable
{
    public Node(string name, FakeClock clock, FakeRandom random, string tunnelAddress, IpEndpoint endpoint, int underLoad = 1024)
    {
        Name = name;
        Output = new CapturingOutput();
        Engine = new WireGuardEngine(Output, new WireGuardEngineOptions { Clock = clock, Random = random, UnderLoadHandshakesPerSecond = underLoad });
        PrivateKey = new byte[32];
        X25519.GeneratePrivateKey(PrivateKey);
        PublicKey = new byte[32];
        X25519.DerivePublicKey(PrivateKey, PublicKey);
        Engine.SetPrivateKey(PrivateKey);
        TunnelAddress = IpAddress.Parse(tunnelAddress);
        Endpoint = endpoint;
    }

    public string Name { get; }
    public WireGuardEngine Engine { get; }
    public CapturingOutput Output { get; }
    public byte[] PrivateKey { get; }
    public byte[] PublicKey { get; }
    public IpAddress TunnelAddress { get; }
    public IpEndpoint Endpoint { get; }
    public PublicKey Key => new(PublicKey);
    public void Dispose() => Engine.Dispose();
}

/// <summary>Two engines wired back to back, with helpers to pump datagrams between them.</summary>
public sealed class EnginePair : IDisposable
{
    public readonly FakeClock Clock = new();
    public readonly FakeRandom Random = new(42);
    public readonly Node A;
    public readonly Node B;
    public readonly Peer PeerBOnA;
    public readonly Peer PeerAOnB;
    public readonly List<byte[]> DeliveredToA = new();
    public readonly List<byte[]> DeliveredToB = new();
    public readonly List<TunnelResult> Results = new();

    public EnginePair(byte[]? psk = null, bool endpointOnB = true, int underLoad = 1024)
    {
        A = new Node("A", Clock, Random, "10.0.0.1", new IpEndpoint(IpAddress.Parse("192.0.2.1"), 51820), underLoad);
        B = new Node("B", Clock, Random, "10.0.0.2", new IpEndpoint(IpAddress.Parse("192.0.2.2"), 51821), underLoad);
        PeerBOnA = A.Engine.GetOrAddPeer(B.Key);
        A.Engine.AddAllowedIp(PeerBOnA, IpPrefix.Parse("10.0.0.2/32"));
        A.Engine.SetEndpoint(PeerBOnA, B.Endpoint);
        PeerAOnB = B.Engine.GetOrAddPeer(A.Key);
        B.Engine.AddAllowedIp(PeerAOnB, IpPrefix.Parse("10.0.0.1/32"));
        if (endpointOnB) B.Engine.SetEndpoint(PeerAOnB, A.Endpoint);
        if (psk is not null)
        {
            A.Engine.SetPresharedKey(PeerBOnA, psk);
            B.Engine.SetPresharedKey(PeerAOnB, psk);
        }
    }

    /// <summary>Delivers everything queued in both outputs until quiet; returns datagrams moved.</summary>
    public int Pump(int maxRounds = 20)
    {
        int moved = 0;
        for (int round = 0; round < maxRounds; round++)
        {
            var fromA = A.Output.Drain();
            var fromB = B.Output.Drain();
            if (fromA.Count == 0 && fromB.Count == 0) break;
            foreach (var (_, data) in fromA) { Deliver(B, A.Endpoint, data); moved++; }
            foreach (var (_, data) in fromB) { Deliver(A, B.Endpoint, data); moved++; }
        }
        return moved;
    }

    public TunnelResult Deliver(Node to, IpEndpoint from, byte[] datagram)
    {
        var buffer = (byte[])datagram.Clone();
        var result = to.Engine.Decapsulate(from, buffer);
        Results.Add(result);
        if (result.Action == TunnelAction.DeliverToTun)
            (to == A ? DeliveredToA : DeliveredToB).Add(buffer.AsSpan(result.Offset, result.Length).ToArray());
        return result;
    }

    /// <summary>Encapsulates on <paramref name="from"/>; a direct SendToNetwork result is delivered to the other side at once.</summary>
    public TunnelResult Send(Node from, byte[] ipPacket)
    {
        var buffer = new byte[ipPacket.Length + 64];
        var result = from.Engine.Encapsulate(ipPacket, buffer);
        if (result.Action == TunnelAction.SendToNetwork)
        {
            var to = from == A ? B : A;
            Deliver(to, from.Endpoint, buffer.AsSpan(result.Offset, result.Length).ToArray());
        }
        return result;
    }

    public void Handshake()
    {
        A.Engine.InitiateHandshake(PeerBOnA);
        Pump();
    }

    public void Dispose()
    {
        A.Dispose();
        B.Dispose();
    }
}

public static class Packets
{
    /// <summary>A minimal IPv4/ICMP echo request (checksums computed), <paramref name="payload"/> bytes of data.</summary>
    public static byte[] Icmp4(IpAddress source, IpAddress destination, ushort sequence, int payload = 32, byte type = 8)
    {
        var p = new byte[20 + 8 + payload];
        p[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)p.Length);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), sequence);
        p[8] = 64;
        p[9] = 1;
        source.WriteBytes(p.AsSpan(12));
        destination.WriteBytes(p.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), Checksum(p.AsSpan(0, 20)));
        p[20] = type;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(24), 0x4747);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(26), sequence);
        for (int i = 0; i < payload; i++) p[28 + i] = (byte)(sequence + i);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(22), Checksum(p.AsSpan(20)));
        return p;
    }

    public static byte[] Ip6(IpAddress source, IpAddress destination, int payload)
    {
        var p = new byte[40 + payload];
        p[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), (ushort)payload);
        p[6] = 59; // no next header
        p[7] = 64;
        source.WriteBytes(p.AsSpan(8));
        destination.WriteBytes(p.AsSpan(24));
        return p;
    }

    public static ushort Checksum(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        int i = 0;
        for (; i + 1 < data.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if (i < data.Length) sum += (uint)data[i] << 8;
        while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }
}
