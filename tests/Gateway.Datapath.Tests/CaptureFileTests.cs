using System.Buffers.Binary;

namespace Gateway.Datapath.Tests;

public sealed class CaptureFileTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "gw-capture-" + Guid.NewGuid().ToString("N"));

    public CaptureFileTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(LinkType.Ethernet)]
    [InlineData(LinkType.Raw)]
    [InlineData(LinkType.LinuxSll)]
    [InlineData(LinkType.LinuxSll2)]
    public void WriteThenReadKeepsLinkTypeBytesAndTimestamps(LinkType linkType)
    {
        string path = Path.Combine(_dir, $"{linkType}.pcap");
        var t0 = new DateTime(2026, 3, 4, 5, 6, 7, DateTimeKind.Utc).AddTicks(1234560);   // 123456 us
        byte[][] frames = [[1, 2, 3], new byte[1500], [0x45, 0, 0, 20]];
        using (var w = new CaptureFileWriter(path, linkType))
        {
            for (int i = 0; i < frames.Length; i++) w.Write(frames[i], t0.AddSeconds(i));
        }
        using var r = CaptureFileReader.Open(path);
        Assert.Equal(linkType, r.LinkType);
        for (int i = 0; i < frames.Length; i++)
        {
            Assert.True(r.TryReadNext(out CapturedPacket p));
            Assert.Equal(frames[i], p.Data.ToArray());
            Assert.Equal(t0.AddSeconds(i), p.TimestampUtc);
            Assert.Equal(frames[i].Length, p.OriginalLength);
            Assert.False(p.IsTruncated);
        }
        Assert.False(r.TryReadNext(out _));
    }

    [Fact]
    public void ReadsPcapngWithItsLinkType()
    {
        byte[] frame = PacketFactory.Sll2(PacketFactory.Ipv4(0x0A000001, 0x0A000002, IpProtocol.Udp, PacketFactory.Udp(1, 2, [9, 9, 9])));
        string path = Path.Combine(_dir, "x.pcapng");
        File.WriteAllBytes(path, Pcapng(276, frame, originalLength: frame.Length));
        using var r = CaptureFileReader.Open(path);
        Assert.Equal(LinkType.LinuxSll2, r.LinkType);
        Assert.True(r.TryReadNext(out var p));
        Assert.Equal(frame, p.Data.ToArray());
        Assert.Equal(new DateTime(2026, 1, 1, 0, 0, 1, DateTimeKind.Utc), p.TimestampUtc);
        Assert.False(r.TryReadNext(out _));
    }

    [Fact]
    public void SnapLengthTruncationIsReported()
    {
        byte[] frame = new byte[100];
        string path = Path.Combine(_dir, "snap.pcap");
        File.WriteAllBytes(path, Pcap(1, frame[..60], originalLength: 100));
        using var r = CaptureFileReader.Open(path);
        Assert.True(r.TryReadNext(out var p));
        Assert.Equal(60, p.Data.Length);
        Assert.Equal(100, p.OriginalLength);
        Assert.True(p.IsTruncated);
    }

    [Fact]
    public void MissingAndGarbageFilesGiveOneClearException()
    {
        var missing = Assert.Throws<CaptureFileException>(() => CaptureFileReader.Open(Path.Combine(_dir, "nope.pcap")));
        Assert.Contains("does not exist", missing.Message);
        string garbage = Path.Combine(_dir, "garbage.pcap");
        File.WriteAllText(garbage, "this is not a capture file at all, just text");
        var bad = Assert.Throws<CaptureFileException>(() => CaptureFileReader.Open(garbage));
        Assert.Contains("cannot read capture file", bad.Message);
        Assert.DoesNotContain("\n", bad.Message);
    }

    /// <summary>A classic pcap file (microsecond, little-endian) with one record, by hand.</summary>
    internal static byte[] Pcap(uint linkType, byte[] data, int originalLength, uint seconds = 1767225601)
    {
        var b = new byte[24 + 16 + data.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, 0xA1B2C3D4);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(4), 2);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(6), 4);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), 65535);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(20), linkType);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(24), seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(32), (uint)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(36), (uint)originalLength);
        data.CopyTo(b, 40);
        return b;
    }

    /// <summary>A pcapng file: Section Header, Interface Description, one Enhanced Packet block.</summary>
    internal static byte[] Pcapng(ushort linkType, byte[] data, int originalLength)
    {
        var s = new MemoryStream();
        void U32(uint v) { Span<byte> x = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(x, v); s.Write(x); }
        void U16(ushort v) { Span<byte> x = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(x, v); s.Write(x); }
        // SHB
        U32(0x0A0D0D0A); U32(28); U32(0x1A2B3C4D); U16(1); U16(0); U32(0xFFFFFFFF); U32(0xFFFFFFFF); U32(28);
        // IDB (default microsecond resolution)
        U32(1); U32(20); U16(linkType); U16(0); U32(262144); U32(20);
        // EPB
        int padded = (data.Length + 3) & ~3;
        uint total = (uint)(32 + padded);
        ulong micros = 1767225601UL * 1_000_000;
        U32(6); U32(total); U32(0); U32((uint)(micros >> 32)); U32((uint)micros); U32((uint)data.Length); U32((uint)originalLength);
        s.Write(data);
        s.Write(new byte[padded - data.Length]);
        U32(total);
        return s.ToArray();
    }

    [Fact]
    public void ARecordWithAnImpossibleTimestampIsReadNotThrown()
    {
        // Found by fuzzing (scripts/fuzz.sh capture): SharpPcap's timestamp conversion threw
        // OverflowException out of TryReadNext, and `gateway audit` died with a stack trace.
        string path = Path.Combine(_dir, "wild-time.pcap");
        var file = new List<byte>();
        file.AddRange([0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 1, 0, 0, 0]);
        byte[] frame = new byte[60];
        file.AddRange(BitConverter.GetBytes(uint.MaxValue));   // ts_sec
        file.AddRange(BitConverter.GetBytes(uint.MaxValue));   // ts_usec, far beyond 10^6
        file.AddRange(BitConverter.GetBytes(frame.Length));
        file.AddRange(BitConverter.GetBytes(frame.Length));
        file.AddRange(frame);
        File.WriteAllBytes(path, file.ToArray());
        using var r = CaptureFileReader.Open(path);
        Assert.True(r.TryReadNext(out CapturedPacket p));
        Assert.Equal(60, p.Data.Length);
        Assert.True(p.TimestampUtc.Year > 2100);
        Assert.False(r.TryReadNext(out _));
        Assert.Equal(1, Gateway.Datapath.Audit.CaptureAuditor.AuditFile(path).TotalPackets);
    }
}
