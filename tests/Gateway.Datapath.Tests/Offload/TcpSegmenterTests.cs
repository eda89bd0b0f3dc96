using System.Buffers.Binary;
using Gateway.Datapath.Offload;
using PacketDotNet;
using PacketDotNet.Utils;

namespace Gateway.Datapath.Tests.Offload;

/// <summary>Software TSO checked with PacketDotNet as the oracle for headers and checksums.</summary>
public class TcpSegmenterTests
{
    private const uint Sequence = 0xFFFF_F000; // wraps within the super-packet
    private const ushort Identification = 0xFFFE; // wraps too

    /// <summary>A TCP super-packet as the kernel hands it over a TUN with TSO: one IP header, one
    /// TCP header with timestamp options, a payload of many MSS, pseudo-header sum in the checksum.</summary>
    internal static (byte[] Packet, VirtioNetHeader Header, byte[] Payload) SuperPacket(bool v6, int payloadLength, int mss, byte flags, int seed = 1)
    {
        var payload = new byte[payloadLength];
        new Random(seed).NextBytes(payload);
        int ip = v6 ? 40 : 20;
        const int tcpHeader = 32;
        var packet = new byte[ip + tcpHeader + payloadLength];
        if (v6)
        {
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)(tcpHeader + payloadLength));
            packet[6] = 6;
            packet[7] = 64;
            IpAddress.Parse("fd00::1").WriteBytes(packet.AsSpan(8));
            IpAddress.Parse("fd00::2").WriteBytes(packet.AsSpan(24));
        }
        else
        {
            packet[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)Math.Min(packet.Length, 65535));
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), Identification);
            packet[6] = 0x40; // DF
            packet[8] = 64;
            packet[9] = 6;
            IpAddress.Parse("10.0.0.1").WriteBytes(packet.AsSpan(12));
            IpAddress.Parse("10.0.0.2").WriteBytes(packet.AsSpan(16));
        }
        var tcp = packet.AsSpan(ip);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], 5201);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], Sequence);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], 777);
        tcp[12] = (tcpHeader / 4) << 4;
        tcp[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 512);
        tcp[20] = 1; tcp[21] = 1; tcp[22] = 8; tcp[23] = 10; // NOP NOP TS
        payload.CopyTo(tcp[tcpHeader..]);
        var header = new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, v6 ? GsoType.TcpV6 : GsoType.TcpV4, ecn: false,
            (ushort)(ip + tcpHeader), (ushort)mss, (ushort)ip, 16);
        return (packet, header, payload);
    }

    [Theory]
    [InlineData(false, 10_000, 1448)]
    [InlineData(true, 10_000, 1428)]
    [InlineData(false, 1448, 1448)]
    [InlineData(false, 1449, 1448)]
    [InlineData(true, 65_000, 1428)]
    public void Segments_are_valid_packets_that_carry_the_payload_in_order(bool v6, int payloadLength, int mss)
    {
        const byte flags = 0x80 | 0x10 | 0x08 | 0x01; // CWR ACK PSH FIN
        var (packet, header, payload) = SuperPacket(v6, payloadLength, mss, flags);
        Assert.True(TcpSegmenter.TryGetLayout(packet, header, out var layout));
        Assert.Equal((payloadLength + mss - 1) / mss, layout.Count);
        var carried = new List<byte>();
        var destination = new byte[layout.HeaderLength + mss];
        for (int i = 0; i < layout.Count; i++)
        {
            int length = TcpSegmenter.WriteSegment(packet, layout, i, destination);
            var segment = destination.AsSpan(0, length).ToArray();
            IPPacket ip = v6 ? new IPv6Packet(new ByteArraySegment(segment)) : new IPv4Packet(new ByteArraySegment(segment));
            var tcp = ip.Extract<TcpPacket>();
            Assert.NotNull(tcp);
            if (ip is IPv4Packet v4)
            {
                Assert.Equal(length, v4.TotalLength);
                Assert.True(v4.ValidIPChecksum, $"segment {i}: IPv4 header checksum");
                Assert.Equal((ushort)(Identification + i), v4.Id);
            }
            else
            {
                Assert.Equal(length - 40, ip.PayloadLength);
            }
            Assert.True(tcp.ValidTcpChecksum, $"segment {i}: TCP checksum");
            Assert.True(TransportChecksum.Verify(segment));
            Assert.Equal(unchecked(Sequence + (uint)(i * mss)), tcp.SequenceNumber);
            bool last = i == layout.Count - 1;
            Assert.Equal(last, tcp.Finished);
            Assert.Equal(last, tcp.Push);
            Assert.Equal(i == 0, tcp.CongestionWindowReduced);
            Assert.True(tcp.Acknowledgment);
            Assert.Equal(12, tcp.Options.Length);
            Assert.True(tcp.PayloadData.Length <= mss);
            carried.AddRange(tcp.PayloadData);
        }
        Assert.Equal(payload, carried.ToArray());
    }

    [Fact]
    public void Malformed_super_packets_are_refused()
    {
        var (packet, header, _) = SuperPacket(false, 5000, 1448, 0x10);
        Assert.True(TcpSegmenter.TryGetLayout(packet, header, out _));
        var zeroMss = new VirtioNetHeader(header.Flags, header.Gso, false, header.HeaderLength, 0, header.ChecksumStart, header.ChecksumOffset);
        Assert.False(TcpSegmenter.TryGetLayout(packet, zeroMss, out _));
        var wrongFamily = new VirtioNetHeader(header.Flags, GsoType.TcpV6, false, header.HeaderLength, header.GsoSize, header.ChecksumStart, header.ChecksumOffset);
        Assert.False(TcpSegmenter.TryGetLayout(packet, wrongFamily, out _));
        var udp = new VirtioNetHeader(header.Flags, GsoType.Udp, false, header.HeaderLength, header.GsoSize, header.ChecksumStart, header.ChecksumOffset);
        Assert.False(TcpSegmenter.TryGetLayout(packet, udp, out _));
        var pastEnd = new VirtioNetHeader(header.Flags, header.Gso, false, header.HeaderLength, header.GsoSize, 60_000, header.ChecksumOffset);
        Assert.False(TcpSegmenter.TryGetLayout(packet, pastEnd, out _));
        Assert.False(TcpSegmenter.TryGetLayout(packet.AsSpan(0, 52), header, out _)); // headers only, no payload
        Assert.False(TcpSegmenter.TryGetLayout(packet.AsSpan(0, 10), header, out _));
        var notTcp = packet.ToArray();
        notTcp[9] = 17;
        Assert.False(TcpSegmenter.TryGetLayout(notTcp, header, out _));
    }

    [Theory]
    [InlineData(false, (byte)17)]
    [InlineData(true, (byte)17)]
    [InlineData(false, (byte)6)]
    public void A_partial_checksum_is_completed(bool v6, byte protocol)
    {
        // A complete packet with a correct checksum, then the field set back to the pseudo-header
        // sum as a sender using checksum offload leaves it.
        var (packet, _, _) = SuperPacket(v6, 300, 1448, 0x18);
        int ip = v6 ? 40 : 20;
        if (protocol == 17)
        {
            packet = packet.AsSpan(0, ip + 8 + 300).ToArray();
            if (v6) { packet[6] = 17; BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), 308); }
            else { packet[9] = 17; BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length); }
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(ip + 4), 308);
        }
        int offset = protocol == 17 ? 6 : 16;
        Assert.True(TransportChecksum.TryFill(packet));
        Assert.True(TransportChecksum.Verify(packet));
        int l4Length = packet.Length - ip;
        ulong pseudo = v6
            ? TransportChecksum.PseudoHeaderV6(packet.AsSpan(8, 16), packet.AsSpan(24, 16), protocol, l4Length)
            : TransportChecksum.PseudoHeaderV4(BinaryPrimitives.ReadUInt32BigEndian(packet.AsSpan(12)), BinaryPrimitives.ReadUInt32BigEndian(packet.AsSpan(16)), protocol, l4Length);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(ip + offset), InternetChecksum.Fold(pseudo));
        Assert.False(TransportChecksum.Verify(packet));
        Assert.True(TcpSegmenter.TryCompleteChecksum(packet, ip, offset));
        Assert.True(TransportChecksum.Verify(packet));
        Assert.False(TcpSegmenter.TryCompleteChecksum(packet, packet.Length - 1, offset));
    }

    [Fact]
    public void Segmenting_allocates_nothing()
    {
        var (packet, header, _) = SuperPacket(false, 60_000, 1448, 0x18);
        var destination = new byte[2048];
        Assert.True(TcpSegmenter.TryGetLayout(packet, header, out var layout));
        for (int i = 0; i < layout.Count; i++) TcpSegmenter.WriteSegment(packet, layout, i, destination);
        long before = GC.GetAllocatedBytesForCurrentThread();
        int total = 0;
        for (int round = 0; round < 20; round++)
        {
            TcpSegmenter.TryGetLayout(packet, header, out layout);
            for (int i = 0; i < layout.Count; i++) total += TcpSegmenter.WriteSegment(packet, layout, i, destination);
        }
        long after = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(0, after - before);
        Assert.True(total > 20 * 60_000);
    }

    [Fact]
    public void The_virtio_header_round_trips_in_little_endian()
    {
        var header = new VirtioNetHeader(1, GsoType.TcpV6, ecn: true, 72, 1428, 40, 16);
        var bytes = new byte[VirtioNetHeader.Size];
        header.Write(bytes);
        Assert.Equal(new byte[] { 1, 0x84, 72, 0, 0x94, 0x05, 40, 0, 16, 0 }, bytes);
        var back = VirtioNetHeader.Read(bytes);
        Assert.Equal(GsoType.TcpV6, back.Gso);
        Assert.True(back.Ecn && back.NeedsChecksum);
        Assert.Equal((72, 1428, 40, 16), (back.HeaderLength, back.GsoSize, back.ChecksumStart, back.ChecksumOffset));
    }
}
