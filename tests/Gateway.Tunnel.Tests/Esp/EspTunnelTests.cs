using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Tunnel.Esp;

namespace Gateway.Tunnel.Tests.Esp;

public class EspTunnelTests
{
    internal const string BootA = "11111111-2222-3333-4444-555555555555";
    internal const string BootB = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    internal static readonly IpAddress AddrA = IpAddress.Parse("192.168.50.1"), AddrB = IpAddress.Parse("192.168.50.2");

    internal static string KeyLine(int spi, char fill) => $"{spi}+ rfc4106(gcm(aes)) {new string(fill, 40)} 128\n";

    private sealed class World : IDisposable
    {
        public readonly FakeClock Clock = new();
        public readonly IpsecKeyManager KeysA, KeysB;
        public readonly EspTunnel A, B;

        public World(string keys)
        {
            KeysA = new IpsecKeyManager(Clock, TimeSpan.FromMinutes(5));
            KeysB = new IpsecKeyManager(Clock, TimeSpan.FromMinutes(5));
            KeysA.Load(keys);
            KeysB.Load(keys);
            A = new EspTunnel(KeysA, AddrA, BootA);
            B = new EspTunnel(KeysB, AddrB, BootB);
            A.SetPeer(AddrB, BootB);
            B.SetPeer(AddrA, BootA);
        }

        public void Dispose()
        {
            A.Dispose();
            B.Dispose();
        }
    }

    /// <summary>An IPv4 packet (version nibble 4) of <paramref name="length"/> bytes.</summary>
    internal static byte[] Ipv4(int length, int tag)
    {
        var p = new byte[length];
        p[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)length);
        BinaryPrimitives.WriteInt32BigEndian(p.AsSpan(length - 4), tag);
        return p;
    }

    /// <summary>Seals on <paramref name="from"/>, opens on <paramref name="to"/>; returns the status and the SPI used.</summary>
    private static (EspStatus Status, uint Spi) Send(EspTunnel from, EspTunnel to, int tag)
    {
        var inner = Ipv4(100, tag);
        var buffer = new byte[256];
        inner.CopyTo(buffer, 32);
        var s = from.Encapsulate(to.LocalAddress, buffer, 32, inner.Length);
        if (!s.IsOk) return (s.Status, 0);
        var esp = buffer.AsSpan(s.Offset, s.Length);
        uint spi = BinaryPrimitives.ReadUInt32BigEndian(esp);
        var r = to.Decapsulate(from.LocalAddress, esp);
        if (r.IsOk) Assert.Equal(inner, esp.Slice(r.Offset, r.Length).ToArray());
        return (r.Status, spi);
    }

    [Fact]
    public void BothDirectionsUseTheirOwnDerivedKeys()
    {
        using var w = new World(KeyLine(3, 'a'));
        Assert.Equal((EspStatus.Ok, 3u), Send(w.A, w.B, 1));
        Assert.Equal((EspStatus.Ok, 3u), Send(w.B, w.A, 2));
        Assert.Equal(1, w.A.GetSendCount(EspStatus.Ok));
        Assert.Equal(1, w.B.GetReceiveCount(EspStatus.Ok));
        // A's outbound key is B's inbound key and differs from B's outbound key.
        Assert.Equal(w.A.OutboundFor(AddrB)!.Spi, w.B.InboundFor(AddrA, 3)!.Spi);
    }

    [Fact]
    public void UnknownSourceOrSpiIsNoState()
    {
        using var w = new World(KeyLine(3, 'a'));
        var buffer = new byte[256];
        Ipv4(60, 0).CopyTo(buffer, 32);
        var s = w.A.Encapsulate(AddrB, buffer, 32, 60);
        var esp = buffer.AsSpan(s.Offset, s.Length).ToArray();
        Assert.Equal(EspStatus.UnknownSpi, w.B.Decapsulate(IpAddress.Parse("192.168.50.9"), (byte[])esp.Clone()).Status);
        BinaryPrimitives.WriteUInt32BigEndian(esp, 4);
        Assert.Equal(EspStatus.UnknownSpi, w.B.Decapsulate(AddrA, esp).Status);
        Assert.Equal(EspStatus.Short, w.B.Decapsulate(AddrA, new byte[3]).Status);
        Assert.Equal(2, w.B.GetReceiveCount(EspStatus.UnknownSpi));
        Assert.Equal("no_state", EspTunnel.ErrorType(EspStatus.UnknownSpi));
        Assert.Equal(EspStatus.NoOutboundState, w.A.Encapsulate(IpAddress.Parse("192.168.50.9"), buffer, 32, 60).Status);
        Assert.Equal(EspStatus.NotTunnelPayload, w.A.Encapsulate(AddrB, new byte[100], 32, 20).Status);
    }

    [Fact]
    public void WrongBootIdMeansAuthenticationFailure()
    {
        using var w = new World(KeyLine(3, 'a'));
        w.B.SetPeer(AddrA, "00000000-0000-0000-0000-000000000000"); // B believes A rebooted
        Assert.Equal(EspStatus.AuthenticationFailed, Send(w.A, w.B, 1).Status);
        w.B.SetPeer(AddrA, BootA);
        Assert.Equal(EspStatus.Ok, Send(w.A, w.B, 2).Status);
    }

    [Fact]
    public void ReplacePeersKeepsUnchangedSasAndRekeysARestartedPeer()
    {
        using var w = new World(KeyLine(3, 'a'));
        var addrC = IpAddress.Parse("192.168.50.3");
        const string BootC = "cccccccc-0000-4000-8000-000000000001";
        Assert.Equal(EspStatus.Ok, Send(w.A, w.B, 1).Status);
        var kept = w.A.OutboundFor(AddrB);
        w.A.ReplacePeers(new Dictionary<IpAddress, string> { [AddrB] = BootB, [addrC] = BootC });
        Assert.Same(kept, w.A.OutboundFor(AddrB)); // same boot id: the SA (and its counter) stays
        Assert.NotNull(w.A.OutboundFor(addrC));
        Assert.Equal(EspStatus.Ok, Send(w.A, w.B, 2).Status);
        // B restarts: a new tunnel with a new boot id; A learns it (as from B's new node record).
        const string BootB2 = "bbbbbbbb-0000-4000-8000-000000000002";
        using var b2 = new EspTunnel(w.KeysB, AddrB, BootB2);
        b2.SetPeer(AddrA, BootA);
        Assert.Equal(EspStatus.AuthenticationFailed, Send(w.A, b2, 3).Status);
        w.A.ReplacePeers(new Dictionary<IpAddress, string> { [AddrB] = BootB2 });
        Assert.NotSame(kept, w.A.OutboundFor(AddrB));
        Assert.Null(w.A.OutboundFor(addrC)); // not named: removed
        Assert.Equal(EspStatus.Ok, Send(w.A, b2, 4).Status);
        Assert.Equal(EspStatus.Ok, Send(b2, w.A, 5).Status);
        Assert.Throws<ArgumentException>(() => w.A.ReplacePeers(new Dictionary<IpAddress, string> { [AddrB] = "short" }));
    }

    [Fact]
    public void RotationUnderTrafficLosesNothing()
    {
        using var w = new World(KeyLine(1, 'a'));
        int tag = 0;
        void Traffic(EspTunnel first, EspTunnel second, uint expectedSpi)
        {
            for (int i = 0; i < 50; i++)
            {
                Assert.Equal((EspStatus.Ok, expectedSpi), Send(first, second, ++tag));
                Assert.Equal((EspStatus.Ok, expectedSpi), Send(second, first, ++tag));
            }
        }
        Traffic(w.A, w.B, 1);
        // The new file reaches B first: B accepts 1 and 2 but keeps sending 1, which A still needs.
        Assert.Equal(IpsecKeyLoadOutcome.Rotated, w.KeysB.Load(KeyLine(2, 'b')));
        w.B.Refresh();
        Assert.Equal(2, w.B.KeyCount);
        Traffic(w.B, w.A, 1);
        // A gets it 60 s later (one poll): nobody has been seen with key 2 yet, both still send 1.
        w.Clock.Advance(TimeSpan.FromSeconds(60));
        w.KeysA.Load(KeyLine(2, 'b'));
        w.A.Refresh();
        w.B.Refresh();
        Traffic(w.A, w.B, 1);
        // Half the rotation duration after B loaded it, B's key 2 has settled: B sends with 2,
        // and A, seeing B use it, sends with 2 too without waiting for its own deadline.
        w.Clock.Advance(TimeSpan.FromSeconds(90));
        w.A.Refresh();
        w.B.Refresh();
        Traffic(w.B, w.A, 2);
        // After the overlap the old key goes; traffic goes on with 2.
        w.Clock.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal(1, w.KeysB.RemoveExpired());
        Assert.Equal(1, w.KeysA.RemoveExpired());
        w.A.Refresh();
        w.B.Refresh();
        Assert.Equal(1, w.B.KeyCount);
        Assert.Null(w.B.InboundFor(AddrA, 1));
        Traffic(w.A, w.B, 2);
        foreach (var t in new[] { w.A, w.B })
        {
            Assert.Equal(tag / 2, t.GetReceiveCount(EspStatus.Ok));
            for (var st = EspStatus.Short; st <= EspStatus.NotTunnelPayload; st++)
                Assert.Equal(0, t.GetReceiveCount(st));
        }
    }

    [Fact]
    public void AloneARotatedNodeSwitchesAtHalfTheDuration()
    {
        using var w = new World(KeyLine(1, 'a'));
        w.KeysA.Load(KeyLine(2, 'b'));
        w.A.Refresh();
        Assert.Equal(1u, w.A.OutboundFor(AddrB)!.Spi);
        w.Clock.Advance(TimeSpan.FromSeconds(149));
        w.A.Refresh();
        Assert.Equal(1u, w.A.OutboundFor(AddrB)!.Spi);
        w.Clock.Advance(TimeSpan.FromSeconds(1));
        w.A.Refresh();
        Assert.Equal(2u, w.A.OutboundFor(AddrB)!.Spi);
        // B never loaded key 2: its packets are refused as no state, counted.
        Assert.Equal(EspStatus.UnknownSpi, Send(w.A, w.B, 1).Status);
        Assert.Equal(1, w.B.GetReceiveCount(EspStatus.UnknownSpi));
    }

    [Fact]
    public void OldSpiIsDroppedAfterTheOverlap()
    {
        using var w = new World(KeyLine(1, 'a'));
        var buffer = new byte[256];
        Ipv4(80, 7).CopyTo(buffer, 32);
        var s = w.A.Encapsulate(AddrB, buffer, 32, 80); // sealed with key 1
        var esp = buffer.AsSpan(s.Offset, s.Length).ToArray();
        w.KeysB.Load(KeyLine(2, 'b'));
        w.B.Refresh();
        w.Clock.Advance(TimeSpan.FromMinutes(4));
        Assert.Equal(0, w.KeysB.RemoveExpired());
        w.B.Refresh();
        Assert.Equal(EspStatus.Ok, w.B.Decapsulate(AddrA, (byte[])esp.Clone()).Status); // overlap: accepted
        w.Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(1, w.KeysB.RemoveExpired());
        w.B.Refresh();
        Assert.Equal(EspStatus.UnknownSpi, w.B.Decapsulate(AddrA, esp).Status);
    }

    [Fact]
    public void SasSurviveARefreshThatKeepsThem()
    {
        using var w = new World(KeyLine(1, 'a'));
        Send(w.A, w.B, 1);
        var sa = w.A.OutboundFor(AddrB);
        w.KeysA.Load(KeyLine(1, 'a'));
        w.A.Refresh();
        w.A.SetPeer(IpAddress.Parse("192.168.50.3"), BootB);
        Assert.Same(sa, w.A.OutboundFor(AddrB));
        Assert.Equal(1ul, sa!.LastSequence);
    }

    [Fact]
    public void EncapsulateAndDecapsulateAllocateNothing()
    {
        using var w = new World(KeyLine(1, 'a'));
        var buffer = new byte[1600];
        Ipv4(1420, 1).CopyTo(buffer, 32);
        void RoundTrip()
        {
            buffer[32] = 0x45;
            var s = w.A.Encapsulate(AddrB, buffer, 32, 1420);
            var r = w.B.Decapsulate(AddrA, buffer.AsSpan(s.Offset, s.Length));
            if (!r.IsOk) throw new InvalidOperationException(r.ToString());
        }
        for (int i = 0; i < 200; i++) RoundTrip();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++) RoundTrip();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
