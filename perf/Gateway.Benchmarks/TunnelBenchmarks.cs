using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Tunnel;

namespace Gateway.Benchmarks;

/// <summary>A clock the benchmark moves by hand (frozen unless advanced), so sessions never
/// expire mid-run and handshakes are not held back by RekeyTimeout.</summary>
internal sealed class ManualClock : TimeProvider
{
    private long _nanos = 1_000_000_000_000L;
    private DateTimeOffset _utc = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    public override long TimestampFrequency => 1_000_000_000L;
    public override long GetTimestamp() => _nanos;
    public override DateTimeOffset GetUtcNow() => _utc;
    public void Advance(TimeSpan by) { _nanos += by.Ticks * 100; _utc += by; }
}

/// <summary>Keeps the last datagram the engine emitted (handshake messages, keepalives).</summary>
internal sealed class LastDatagram : ITunnelOutput
{
    public readonly byte[] Buffer = new byte[2048];
    public int Length;
    public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram)
    {
        datagram.CopyTo(Buffer);
        Length = datagram.Length;
    }
}

/// <summary>Two engines with a completed handshake, A (10.0.0.1) and B (10.0.0.2).</summary>
internal sealed class TunnelFixture : IDisposable
{
    public readonly ManualClock Clock = new();
    public readonly LastDatagram OutA = new(), OutB = new();
    public readonly WireGuardEngine A, B;
    public readonly Peer BOnA, AOnB;
    public readonly IpEndpoint EndpointA = new(IpAddress.Parse("192.0.2.1"), 51820);
    public readonly IpEndpoint EndpointB = new(IpAddress.Parse("192.0.2.2"), 51820);

    public TunnelFixture(int extraPeers = 0)
    {
        A = new WireGuardEngine(OutA, new WireGuardEngineOptions { Clock = Clock, Mtu = 0 });
        B = new WireGuardEngine(OutB, new WireGuardEngineOptions { Clock = Clock, Mtu = 0 });
        using var ka = WireGuardKey.GeneratePrivate();
        using var kb = WireGuardKey.GeneratePrivate();
        A.SetPrivateKey(ka.Bytes);
        B.SetPrivateKey(kb.Bytes);
        BOnA = A.GetOrAddPeer(B.LocalPublicKey!.Value);
        AOnB = B.GetOrAddPeer(A.LocalPublicKey!.Value);
        A.AddAllowedIp(BOnA, IpPrefix.Parse("10.0.0.2/32"));
        B.AddAllowedIp(AOnB, IpPrefix.Parse("10.0.0.1/32"));
        A.SetEndpoint(BOnA, EndpointB);
        B.SetEndpoint(AOnB, EndpointA);
        for (int i = 0; i < extraPeers; i++)
        {
            var key = new byte[32];
            BinaryPrimitives.WriteInt32LittleEndian(key, i + 1);
            key[31] = 0x42;
            A.AddAllowedIp(A.GetOrAddPeer(new PublicKey(key)), new IpPrefix(IpAddress.FromV4(0x0A400000u + (uint)i), 32));
        }
        Handshake();
    }

    /// <summary>Initiation A->B, response B->A, keepalive A->B (confirms B's keypair).</summary>
    public void Handshake()
    {
        A.InitiateHandshake(BOnA);
        B.Decapsulate(EndpointA, OutA.Buffer.AsSpan(0, OutA.Length));
        A.Decapsulate(EndpointB, OutB.Buffer.AsSpan(0, OutB.Length));
        B.Decapsulate(EndpointA, OutA.Buffer.AsSpan(0, OutA.Length));
        if (!BOnA.HasSession || !AOnB.HasSession) throw new InvalidOperationException("handshake failed");
    }

    /// <summary>Lets a ring of pre-sealed packets be opened again (benchmarks only).</summary>
    public void ResetReceiveWindow()
    {
        lock (AOnB.Sync) AOnB.Current!.Replay.Reset();
    }

    public static byte[] Ipv4Packet(int length)
    {
        var p = new byte[length];
        p[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)length);
        p[9] = 17;
        IpAddress.Parse("10.0.0.1").WriteBytes(p.AsSpan(12));
        IpAddress.Parse("10.0.0.2").WriteBytes(p.AsSpan(16));
        return p;
    }

    public void Dispose()
    {
        A.Dispose();
        B.Dispose();
    }
}

/// <summary>
/// Transport seal/open through the engine next to the bare ChaCha20Poly1305Key call on the same
/// bytes (same padded length, same in-place copy), so the difference is the engine's overhead:
/// route lookup, peer lock, header, padding, replay window, inner-source check.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
public class TunnelTransportBenchmarks
{
    private const int Ring = 4096;
    private TunnelFixture _f = null!;
    private ChaCha20Poly1305Key _rawKey = null!;
    private byte[] _packet = null!;
    private byte[] _buffer = null!;
    private byte[][] _sealed = null!;
    private byte[][] _rawSealed = null!;
    private int _padded;
    private ulong _rawCounter;
    private int _rawOpenIndex;
    private int _engineOpenIndex;

    [Params(64, 1420)]
    public int Size;

    [GlobalSetup]
    public void Setup()
    {
        _f = new TunnelFixture();
        _packet = TunnelFixture.Ipv4Packet(Size);
        _buffer = new byte[Size + 64];
        _padded = Messages.PaddedLength(Size);
        var key = new byte[32];
        new Random(1).NextBytes(key);
        _rawKey = new ChaCha20Poly1305Key(key);
        // A ring of genuine transport messages A -> B for the open benchmarks; B's replay window
        // is reset once per lap (amortized: one 1 KiB clear per 4096 packets).
        _sealed = new byte[Ring][];
        _rawSealed = new byte[Ring][];
        for (int i = 0; i < Ring; i++)
        {
            var r = _f.A.Encapsulate(_packet, _buffer);
            _sealed[i] = _buffer.AsSpan(0, r.Length).ToArray();
            var raw = new byte[r.Length];
            _packet.CopyTo(raw, Messages.TransportHeaderSize);
            _rawKey.Seal((ulong)i, raw.AsSpan(Messages.TransportHeaderSize, _padded), ReadOnlySpan<byte>.Empty,
                raw.AsSpan(Messages.TransportHeaderSize, _padded + Messages.TagSize));
            _rawSealed[i] = raw;
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _f.Dispose();
        _rawKey.Dispose();
    }

    [Benchmark(Baseline = true, Description = "raw AEAD seal")]
    public int RawSeal()
    {
        _packet.CopyTo(_buffer, Messages.TransportHeaderSize);
        _buffer.AsSpan(Messages.TransportHeaderSize + Size, _padded - Size).Clear();
        _rawKey.Seal(_rawCounter++, _buffer.AsSpan(Messages.TransportHeaderSize, _padded), ReadOnlySpan<byte>.Empty,
            _buffer.AsSpan(Messages.TransportHeaderSize, _padded + Messages.TagSize));
        return _padded;
    }

    [Benchmark(Description = "engine seal")]
    public int EngineSeal()
    {
        _packet.CopyTo(_buffer, Messages.TransportHeaderSize);
        return _f.A.EncapsulateInPlace(_buffer, Size).Length;
    }

    [Benchmark(Description = "raw AEAD open")]
    public bool RawOpen()
    {
        int i = _rawOpenIndex++ & (Ring - 1);
        var src = _rawSealed[i];
        src.CopyTo(_buffer, 0);
        bool ok = _rawKey.Open((ulong)i, _buffer.AsSpan(Messages.TransportHeaderSize, src.Length - Messages.TransportHeaderSize),
            ReadOnlySpan<byte>.Empty, _buffer.AsSpan(Messages.TransportHeaderSize, src.Length - Messages.TransportOverhead));
        if (!ok) throw new InvalidOperationException("raw open failed");
        return ok;
    }

    [Benchmark(Description = "engine open")]
    public int EngineOpen()
    {
        int i = _engineOpenIndex++ & (Ring - 1);
        if (i == 0) _f.ResetReceiveWindow();
        var src = _sealed[i];
        src.CopyTo(_buffer, 0);
        var r = _f.B.Decapsulate(_f.EndpointA, _buffer.AsSpan(0, src.Length));
        if (r.Action != TunnelAction.DeliverToTun) throw new InvalidOperationException(r.ToString());
        return r.Length;
    }
}

/// <summary>Full handshakes per second: initiation (A), response (B), confirmation keepalive (A->B).</summary>
[MemoryDiagnoser]
public class TunnelHandshakeBenchmarks
{
    private TunnelFixture _f = null!;

    [GlobalSetup]
    public void Setup() => _f = new TunnelFixture();

    [GlobalCleanup]
    public void Cleanup() => _f.Dispose();

    [Benchmark(Description = "handshake (initiation + response)")]
    public void Handshake()
    {
        _f.Clock.Advance(TimeSpan.FromSeconds(6)); // past the one-initiation-per-RekeyTimeout limit
        _f.Handshake();
    }
}

/// <summary>The RFC 6479 window alone: in-order counters and a reordered pattern.</summary>
public class TunnelReplayWindowBenchmarks
{
    private readonly ReplayWindow _window = new();
    private ulong _counter;

    [Benchmark(Description = "replay window, in order")]
    public bool InOrder()
    {
        if (_counter >= 1UL << 40) { _window.Reset(); _counter = 0; }
        return _window.TryAccept(_counter++);
    }

    [Benchmark(Description = "replay window, reordered by up to 63")]
    public bool Reordered()
    {
        if (_counter >= 1UL << 40) { _window.Reset(); _counter = 0; }
        ulong c = _counter++;
        // Swap neighbours inside blocks of 64: out of order but every counter exactly once.
        return _window.TryAccept((c & ~63UL) | (63 - (c & 63)));
    }
}

/// <summary>The per-packet path with 1 and with 10,000 peers configured (index table and LPM).</summary>
[MemoryDiagnoser]
public class TunnelPeerScaleBenchmarks
{
    private TunnelFixture _f = null!;
    private byte[] _packet = null!;
    private byte[] _buffer = null!;

    [Params(1, 10_000)]
    public int Peers;

    [GlobalSetup]
    public void Setup()
    {
        _f = new TunnelFixture(extraPeers: Peers - 1);
        _packet = TunnelFixture.Ipv4Packet(1420);
        _buffer = new byte[1500];
    }

    [GlobalCleanup]
    public void Cleanup() => _f.Dispose();

    [Benchmark(Description = "engine seal 1420 B")]
    public int Seal()
    {
        _packet.CopyTo(_buffer, Messages.TransportHeaderSize);
        return _f.A.EncapsulateInPlace(_buffer, 1420).Length;
    }
}
