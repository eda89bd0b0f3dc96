using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using Gateway.Datapath;
using Gateway.Datapath.Offload;

namespace Gateway.Benchmarks;

/// <summary>
/// The daemon's TUN offload work per 64 KiB of TCP: cutting a super-packet into 1448-byte
/// segments (TSO on the read side) and merging the segments back (GRO on the write side), next to
/// a plain copy of the same bytes as the floor. Both must allocate nothing.
/// </summary>
[MemoryDiagnoser]
public class OffloadBenchmarks
{
    private const int Mss = 1448;
    private byte[] _super = null!;
    private VirtioNetHeader _header;
    private byte[][] _segments = null!;
    private readonly byte[] _slot = new byte[2048];
    private readonly TcpCoalescer _coalescer = new();

    [GlobalSetup]
    public void Setup()
    {
        const int headers = 20 + 32;
        int payload = 45 * Mss; // 65,160 bytes: as large as one IPv4 packet allows
        _super = new byte[headers + payload];
        var p = _super.AsSpan();
        p[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p[2..], (ushort)_super.Length);
        p[8] = 64;
        p[9] = 6;
        IpAddress.Parse("10.0.0.1").WriteBytes(p[12..]);
        IpAddress.Parse("10.0.0.2").WriteBytes(p[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(p[20..], 40000);
        BinaryPrimitives.WriteUInt16BigEndian(p[22..], 5201);
        p[32] = 8 << 4;
        p[33] = 0x10;
        new Random(1).NextBytes(_super.AsSpan(headers));
        _header = new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, GsoType.TcpV4, false, headers, Mss, 20, 16);
        TcpSegmenter.TryGetLayout(_super, _header, out var layout);
        _segments = new byte[layout.Count][];
        for (int i = 0; i < layout.Count; i++)
        {
            int n = TcpSegmenter.WriteSegment(_super, layout, i, _slot);
            _segments[i] = _slot.AsSpan(0, n).ToArray();
        }
    }

    [Benchmark(Baseline = true, Description = "copy 64 KiB in 1448 B pieces")]
    public int Copy()
    {
        int total = 0;
        for (int offset = 52; offset < _super.Length; offset += Mss)
        {
            int n = Math.Min(Mss, _super.Length - offset);
            _super.AsSpan(offset, n).CopyTo(_slot);
            total += n;
        }
        return total;
    }

    [Benchmark(Description = "TSO: segment a 64 KiB super-packet")]
    public int Segment()
    {
        TcpSegmenter.TryGetLayout(_super, _header, out var layout);
        int total = 0;
        for (int i = 0; i < layout.Count; i++)
        {
            total += TcpSegmenter.WriteSegment(_super, layout, i, _slot);
        }
        return total;
    }

    [Benchmark(Description = "GRO: coalesce 45 segments")]
    public int Coalesce()
    {
        _coalescer.TryStart(_segments[0]);
        for (int i = 1; i < _segments.Length; i++)
        {
            _coalescer.TryAppend(_segments[i]);
        }
        return _coalescer.Flush().Length;
    }
}
