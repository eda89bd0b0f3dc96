using System.Buffers.Binary;
using FsCheck.Xunit;
using Gateway.Crypto;
using Gateway.Tunnel.Esp;

namespace Gateway.Tunnel.Tests.Esp;

public class EspSecurityAssociationTests
{
    private static readonly byte[] KeyAndSalt = Convert.FromHexString("000102030405060708090a0b0c0d0e0f10111213");

    private static (EspSecurityAssociation Out, EspSecurityAssociation In) Pair(int icvBits = 128, bool esn = true, uint spi = 3) =>
        (new EspSecurityAssociation(spi, KeyAndSalt, icvBits, esn), new EspSecurityAssociation(spi, KeyAndSalt, icvBits, esn));

    private static byte[] Inner(int length, byte fill = 0x45)
    {
        var p = new byte[length];
        for (int i = 0; i < length; i++) p[i] = (byte)(fill + i);
        return p;
    }

    /// <summary>Seals <paramref name="inner"/> with headroom and returns the ESP packet bytes.</summary>
    private static byte[] Seal(EspSecurityAssociation sa, byte[] inner, byte nextHeader = 4)
    {
        var buffer = new byte[64 + inner.Length + 64];
        inner.CopyTo(buffer, 64);
        var r = sa.Seal(buffer, 64, inner.Length, nextHeader);
        Assert.Equal(EspStatus.Ok, r.Status);
        return buffer.AsSpan(r.Offset, r.Length).ToArray();
    }

    [Theory]
    [InlineData(0, 128, true)]
    [InlineData(1, 128, true)]
    [InlineData(2, 96, true)]
    [InlineData(3, 128, false)]
    [InlineData(1400, 96, false)]
    [InlineData(1420, 128, true)]
    public void RoundTripsWithAlignedTrailer(int length, int icvBits, bool esn)
    {
        var (o, i) = Pair(icvBits, esn);
        using (o) using (i)
        {
            var inner = Inner(length);
            var packet = Seal(o, inner, 41);
            Assert.Equal(0, (packet.Length - 16 - icvBits / 8) % 4);
            Assert.Equal(o.Overhead(length) + length, packet.Length);
            Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(packet));
            Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(packet.AsSpan(4)));
            Assert.Equal(1ul, BinaryPrimitives.ReadUInt64BigEndian(packet.AsSpan(8))); // IV = sequence number
            var r = i.Open(packet);
            Assert.Equal(EspStatus.Ok, r.Status);
            Assert.Equal(41, r.NextHeader);
            Assert.Equal(inner, packet.AsSpan(r.Offset, r.Length).ToArray());
        }
    }

    [Fact]
    public void SequenceNumbersRiseAndReplaysAreDropped()
    {
        var (o, i) = Pair();
        using (o) using (i)
        {
            var p1 = Seal(o, Inner(40));
            var p2 = Seal(o, Inner(40));
            Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(p2.AsSpan(4)));
            var copy2 = (byte[])p2.Clone();
            Assert.True(i.Open(p2).IsOk);
            Assert.True(i.Open(p1).IsOk); // out of order within the window
            Assert.Equal(EspStatus.Replay, i.Open(copy2).Status);
        }
    }

    [Theory]
    [InlineData(false, EspStatus.Replay)]
    // With ESN a low number behind the window is taken for the next 2^32 subspace (RFC 4303
    // appendix A2.2); the high bits in the AAD are then wrong and the ICV fails.
    [InlineData(true, EspStatus.AuthenticationFailed)]
    public void WindowIs1024Packets(bool esn, EspStatus behindTheWindow)
    {
        var (o, i) = Pair(esn: esn);
        using (o) using (i)
        {
            var first = Seal(o, Inner(20));
            var second = Seal(o, Inner(20));
            for (int n = 0; n < 1022; n++) Seal(o, Inner(20));
            var last = Seal(o, Inner(20)); // sequence 1025
            Assert.True(i.Open(last).IsOk);
            Assert.Equal(behindTheWindow, i.Open(first).Status); // 1025 - 1 = 1024 behind
            Assert.True(i.Open(second).IsOk);                    // 1023 behind: the window's oldest slot
            Assert.Equal(0ul, i.HighestReceived - 1025);
        }
    }

    [Fact]
    public void ForgedPacketDoesNotMoveTheWindow()
    {
        var (o, i) = Pair();
        using (o) using (i)
        {
            var good = Seal(o, Inner(30));
            var forged = (byte[])good.Clone();
            BinaryPrimitives.WriteUInt32BigEndian(forged.AsSpan(4), 5000);
            Assert.Equal(EspStatus.AuthenticationFailed, i.Open(forged).Status);
            Assert.Equal(0ul, i.HighestReceived);
            Assert.True(i.Open(good).IsOk);
        }
    }

    [Fact]
    public void CorruptedIcvCiphertextOrHeaderFailAuthentication()
    {
        var (o, i) = Pair();
        using (o) using (i)
        {
            foreach (int at in new[] { 8, 16, 30, -1 })
            {
                var p = Seal(o, Inner(30));
                p[at < 0 ? p.Length - 1 : at] ^= 0x10;
                Assert.Equal(EspStatus.AuthenticationFailed, i.Open(p).Status);
            }
        }
    }

    [Fact]
    public void UnknownSpiAndShortPacketsAreDropped()
    {
        var (o, i) = Pair();
        using (o) using (i)
        {
            var p = Seal(o, Inner(30));
            BinaryPrimitives.WriteUInt32BigEndian(p, 4);
            Assert.Equal(EspStatus.UnknownSpi, i.Open(p).Status);
            for (int n = 0; n < 16 + 16 + 2; n++)
                Assert.Equal(EspStatus.Short, i.Open(new byte[n]).Status);
        }
    }

    [Fact]
    public void BadPaddingIsDroppedAfterAuthentication()
    {
        using var i = new EspSecurityAssociation(3, KeyAndSalt, 128, true);
        using var key = new AesGcmKey(KeyAndSalt, 16);
        foreach (byte[] trailer in new[] { new byte[] { 1, 3, 2, 4 }, new byte[] { 9, 4 }, new byte[] { 0, 2, 2, 4 } })
        {
            ulong seq = i.HighestReceived + 1;
            var payload = new byte[20 + trailer.Length];
            trailer.CopyTo(payload, 20);
            var packet = new byte[16 + payload.Length + 16];
            BinaryPrimitives.WriteUInt32BigEndian(packet, 3);
            BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(4), (uint)seq);
            BinaryPrimitives.WriteUInt64BigEndian(packet.AsSpan(8), seq);
            var aad = new byte[12];
            BinaryPrimitives.WriteUInt32BigEndian(aad, 3);
            BinaryPrimitives.WriteUInt64BigEndian(aad.AsSpan(4), seq);
            key.Seal(packet.AsSpan(8, 8), payload, aad, packet.AsSpan(16, payload.Length), packet.AsSpan(16 + payload.Length));
            Assert.Equal(EspStatus.BadPadding, i.Open(packet).Status);
        }
    }

    [Theory]
    [InlineData(true, ulong.MaxValue - 2)]
    [InlineData(false, uint.MaxValue - 2)]
    public void SequenceNumberNeverWraps(bool esn, ulong start)
    {
        using var o = new EspSecurityAssociation(3, KeyAndSalt, 128, esn);
        o.SetLastSequence(start);
        Seal(o, Inner(10)); // start + 1 = limit - 1: the last one sent
        var buffer = new byte[200];
        Assert.Equal(EspStatus.SequenceExhausted, o.Seal(buffer, 64, 10, 4).Status);
        Assert.Equal(EspStatus.SequenceExhausted, o.Seal(buffer, 64, 10, 4).Status);
        Assert.Equal(start + 1, o.LastSequence);
    }

    [Fact]
    public void EsnCarriesAcrossThe32BitBoundary()
    {
        var (o, i) = Pair();
        using (o) using (i)
        {
            o.SetLastSequence(uint.MaxValue - 2);
            i.SetReceiveTop(uint.MaxValue - 2);
            var packets = Enumerable.Range(0, 5).Select(_ => Seal(o, Inner(12))).ToArray();
            // On the wire the low half wraps: ..fe, ..ff, 0, 1, 2.
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(packets[2].AsSpan(4)));
            // Deliver out of order across the boundary: the high half is inferred each time.
            foreach (int n in new[] { 2, 0, 4, 1, 3 })
            {
                var r = i.Open(packets[n]);
                Assert.Equal(EspStatus.Ok, r.Status);
                Assert.Equal((ulong)uint.MaxValue - 1 + (ulong)n, r.Sequence);
            }
            Assert.Equal(0x1_0000_0002ul, i.HighestReceived);
        }
    }

    [Theory]
    [InlineData(0x0000_0005_0000_0400ul, 0x0000_0500u, 0x0000_0005_0000_0500ul)] // case A, ahead
    [InlineData(0x0000_0005_0000_0400ul, 0x0000_0010u, 0x0000_0005_0000_0010ul)] // case A, in window
    [InlineData(0x0000_0005_FFFF_FFF0ul, 0x0000_0003u, 0x0000_0006_0000_0003ul)] // case A, next subspace
    [InlineData(0x0000_0005_0000_0010ul, 0xFFFF_FF00u, 0x0000_0004_FFFF_FF00ul)] // case B, previous subspace
    [InlineData(0x0000_0005_0000_0010ul, 0x0000_0020u, 0x0000_0005_0000_0020ul)] // case B, ahead
    [InlineData(0ul, 0xFFFF_FFF0u, 0x0000_0000_FFFF_FFF0ul)]                     // nothing received yet
    public void InfersHighBitsAsRfc4303AppendixA(ulong top, uint low, ulong expected)
    {
        var w = new EspReplayWindow(extendedSequenceNumbers: true);
        w.ResetTo(top);
        Assert.Equal(expected, w.Infer(low));
    }

    [Property(MaxTest = 500)]
    public bool RandomBytesNeverThrow(int seed)
    {
        var rng = new Random(seed);
        using var i = new EspSecurityAssociation(3, KeyAndSalt, rng.Next(2) == 0 ? 96 : 128, rng.Next(2) == 0);
        for (int n = 0; n < 20; n++)
        {
            var p = new byte[rng.Next(0, 200)];
            rng.NextBytes(p);
            if (p.Length >= 4 && rng.Next(2) == 0) BinaryPrimitives.WriteUInt32BigEndian(p, 3);
            if (i.Open(p).IsOk) return false;
        }
        return true;
    }

    [Property(MaxTest = 200)]
    public bool SealNeverThrowsOnAnyBounds(int seed)
    {
        var rng = new Random(seed);
        using var o = new EspSecurityAssociation(3, KeyAndSalt, 128, true);
        var buffer = new byte[rng.Next(0, 120)];
        var r = o.Seal(buffer, rng.Next(-5, 130), rng.Next(-5, 130), 4);
        return r.Status is EspStatus.Ok or EspStatus.BufferTooSmall;
    }

    [Fact]
    public void DisposedSaDropsInsteadOfThrowing()
    {
        var (o, i) = Pair();
        var p = Seal(o, Inner(30));
        o.Dispose();
        i.Dispose();
        Assert.Equal(EspStatus.NoOutboundState, o.Seal(new byte[200], 64, 10, 4).Status);
        Assert.Equal(EspStatus.UnknownSpi, i.Open(p).Status);
    }

    [Fact]
    public void SealAndOpenInPlaceAllocateNothing()
    {
        var (o, i) = Pair();
        using (o) using (i)
        {
            var buffer = new byte[16 + 1420 + 64];
            void RoundTrip()
            {
                var s = o.Seal(buffer, 16, 1420, 4);
                var r = i.Open(buffer.AsSpan(s.Offset, s.Length));
                if (!r.IsOk) throw new InvalidOperationException(r.ToString());
            }
            for (int n = 0; n < 200; n++) RoundTrip();
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int n = 0; n < 1000; n++) RoundTrip();
            Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        }
    }
}
