using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Gateway.Datapath.Tests;

public class ChecksumTests
{
    /// <summary>RFC 1071 done the obvious way, as the reference.</summary>
    private static ushort ReferenceSum(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        for (int i = 0; i + 1 < data.Length; i += 2)
        {
            sum += (uint)(data[i] << 8 | data[i + 1]);
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        if (data.Length % 2 == 1)
        {
            sum += (uint)data[^1] << 8;
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        return (ushort)sum;
    }

    [Fact]
    public void Rfc1071ExampleSum()
    {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        byte[] data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        Assert.Equal(0xddf2, InternetChecksum.Fold(InternetChecksum.Add(0, data)));
        Assert.Equal(0x220d, InternetChecksum.Compute(data));
    }

    [Fact]
    public void KnownIpv4HeaderChecksum()
    {
        // A classic example header (Wikipedia "IPv4 header checksum"): checksum b861.
        byte[] h = Convert.FromHexString("450000730000400040110000c0a80001c0a800c7");
        Assert.Equal(0xb861, InternetChecksum.Compute(h));
        Assert.True(Ipv4Header.FillChecksum(h));
        Assert.Equal(0xb861, BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(10)));
        Assert.True(Ipv4Header.VerifyChecksum(h));
        h[15] ^= 1;
        Assert.False(Ipv4Header.VerifyChecksum(h));
    }

    [Fact]
    public void VectorizedSumMatchesReferenceForEveryLengthAndAlignmentAndNeverReadsOutside()
    {
        var random = new Random(42);
        byte[] buffer = new byte[9000 + 128];
        for (int length = 0; length <= 600; length++)
        {
            Check(length);
        }
        foreach (int length in new[] { 1023, 1024, 1500, 4096, 8999, 9000 })
        {
            Check(length);
        }

        void Check(int length)
        {
            random.NextBytes(buffer);
            int offset = random.Next(0, 64);
            ushort expected = ReferenceSum(buffer.AsSpan(offset, length));
            // Change every byte outside the slice: a read past either end would change the sum.
            ushort a = InternetChecksum.Fold(InternetChecksum.Add(0, buffer.AsSpan(offset, length)));
            for (int i = 0; i < buffer.Length; i++)
            {
                if (i < offset || i >= offset + length) buffer[i] ^= 0xA5;
            }
            ushort b = InternetChecksum.Fold(InternetChecksum.Add(0, buffer.AsSpan(offset, length)));
            Assert.Equal(expected, a);
            Assert.Equal(a, b);
        }
    }

    [Fact]
    public void LargeBuffersDoNotOverflowTheLaneAccumulators()
    {
        byte[] ones = new byte[3 * 1024 * 1024 + 7];
        Array.Fill(ones, (byte)0xFF);
        Assert.Equal(ReferenceSum(ones), InternetChecksum.Fold(InternetChecksum.Add(0, ones)));
    }

    [Property(MaxTest = 300)]
    public bool IncrementalUpdateEqualsFullRecompute(byte[] data, ushort newWord, NonNegativeInt position)
    {
        if (data.Length < 2) return true;
        byte[] copy = (byte[])data.Clone();
        int at = position.Get % (copy.Length / 2) * 2;
        ushort before = InternetChecksum.Compute(copy);
        ushort oldWord = BinaryPrimitives.ReadUInt16BigEndian(copy.AsSpan(at));
        BinaryPrimitives.WriteUInt16BigEndian(copy.AsSpan(at), newWord);
        ushort full = InternetChecksum.Compute(copy);
        ushort incremental = InternetChecksum.Update(before, oldWord, newWord);
        // Ones' complement has two zeros; RFC 1624 eqn 3 never produces the one a full sum can't.
        return Same(full, incremental);
    }

    [Property(MaxTest = 200)]
    public bool IncrementalAddressRewriteEqualsFullRecompute(uint src, uint dst, uint newSrc, ushort id)
    {
        byte[] h = new byte[20];
        new Ipv4Header { TotalLength = 20, Identification = id, TimeToLive = 64, Protocol = 17, Source = src, Destination = dst }.Write(h);
        ushort before = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(10));
        ushort updated = InternetChecksum.Update(before, src, newSrc);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(12), newSrc);
        Ipv4Header.FillChecksum(h);
        return Same(BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(10)), updated);
    }

    [Property(MaxTest = 200)]
    public bool IncrementalIpv6AddressRewriteKeepsUdpChecksumValid(byte[] payload, Guid newSource)
    {
        var random = new Random(payload.Length);
        byte[] packet = RandomUdpV6(random, payload);
        Assert.True(TransportChecksum.TryFill(packet));
        ushort before = BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(40 + 6));
        byte[] oldSrc = packet.AsSpan(8, 16).ToArray();
        byte[] newSrc = newSource.ToByteArray();
        newSrc.CopyTo(packet, 8);
        ushort after = InternetChecksum.Update(before, oldSrc, newSrc);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(46), after == 0 ? (ushort)0xFFFF : after);
        return TransportChecksum.Verify(packet);
    }

    private static bool Same(ushort a, ushort b) => a == b || (a is 0 or 0xFFFF && b is 0 or 0xFFFF);

    [Property(MaxTest = 200)]
    public bool FillThenVerifyForAllTransportsAndBothFamilies(byte[] payload, byte kind, int seed)
    {
        var random = new Random(seed);
        byte[] packet = (kind % 6) switch
        {
            0 => PacketFactory.Ipv4(random32(), random32(), IpProtocol.Udp, PacketFactory.Udp(1, 2, payload), fillL4Checksum: false),
            1 => PacketFactory.Ipv4(random32(), random32(), IpProtocol.Tcp, PacketFactory.Tcp(3, 4, TcpFlags.Ack, payload), fillL4Checksum: false),
            2 => RandomUdpV6(random, payload),
            3 => PacketFactory.Ipv6(rnd128(), rnd128(), IpProtocol.Tcp, PacketFactory.Tcp(5, 6, TcpFlags.Psh, payload)),
            4 => PacketFactory.Ipv4(random32(), random32(), IpProtocol.Icmp, [8, 0, 0, 0, 1, 2, 3, 4, .. payload], fillL4Checksum: false),
            _ => PacketFactory.Ipv6(rnd128(), rnd128(), IpProtocol.Icmpv6, [128, 0, 0, 0, 1, 2, 3, 4, .. payload]),
        };
        if (!TransportChecksum.TryFill(packet) || !TransportChecksum.Verify(packet))
        {
            return false;
        }
        // Any single-bit flip in the L4 part is detected (the checksum catches all 1-bit errors).
        int ipHeader = packet[0] >> 4 == 4 ? 20 : 40;
        int at = ipHeader + random.Next(packet.Length - ipHeader);
        packet[at] ^= (byte)(1 << random.Next(8));
        bool udpV4NoChecksum = kind % 6 == 0 && BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(26)) == 0;
        return udpV4NoChecksum || !TransportChecksum.Verify(packet);

        uint random32() => (uint)random.NextInt64(0, uint.MaxValue);
        UInt128 rnd128() => new((ulong)random.NextInt64(), (ulong)random.NextInt64());
    }

    [Fact]
    public void UdpChecksumThatComputesToZeroIsSentAsFfff()
    {
        // Search a payload whose checksum is 0 before the 0xFFFF substitution.
        for (ushort p = 0; p < ushort.MaxValue; p++)
        {
            byte[] packet = PacketFactory.Ipv4(0x0A000001, 0x0A000002, IpProtocol.Udp, PacketFactory.Udp(1000, 2000, [(byte)(p >> 8), (byte)p]), fillL4Checksum: false);
            Assert.True(TransportChecksum.TryFill(packet));
            if (BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(26)) == 0xFFFF)
            {
                Assert.True(TransportChecksum.Verify(packet));
                return;
            }
            Assert.NotEqual(0, BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(26)));
        }
        Assert.Fail("no payload produced a zero checksum");
    }

    [Fact]
    public void ChecksumsAgreeWithPacketDotNet()
    {
        var random = new Random(7);
        for (int i = 0; i < 50; i++)
        {
            byte[] payload = new byte[random.Next(0, 300)];
            random.NextBytes(payload);
            byte[] udp4 = PacketFactory.Ipv4(0xC0A80001, 0xC0A80002, IpProtocol.Udp, PacketFactory.Udp(5000, 53, payload));
            byte[] tcp6 = PacketFactory.Ipv6(IpAddress.Parse("fd00::1").V6, IpAddress.Parse("fd00::2").V6, IpProtocol.Tcp, PacketFactory.Tcp(1, 2, TcpFlags.Syn, payload));
            var p4 = PacketDotNet.Packet.ParsePacket(PacketDotNet.LinkLayers.Raw, udp4);
            Assert.True(p4.Extract<PacketDotNet.IPv4Packet>().ValidIPChecksum);
            Assert.True(p4.Extract<PacketDotNet.UdpPacket>().ValidUdpChecksum);
            var p6 = PacketDotNet.Packet.ParsePacket(PacketDotNet.LinkLayers.Raw, tcp6);
            Assert.True(p6.Extract<PacketDotNet.TcpPacket>().ValidTcpChecksum);
        }
    }

    private static byte[] RandomUdpV6(Random random, byte[] payload) =>
        PacketFactory.Ipv6(new UInt128((ulong)random.NextInt64(), (ulong)random.NextInt64()),
            new UInt128((ulong)random.NextInt64(), (ulong)random.NextInt64()), IpProtocol.Udp, PacketFactory.Udp(7, 8, payload));
}
