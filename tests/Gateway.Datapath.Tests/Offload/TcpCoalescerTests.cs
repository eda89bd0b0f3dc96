using System.Buffers.Binary;
using Gateway.Datapath.Offload;

namespace Gateway.Datapath.Tests.Offload;

public class TcpCoalescerTests
{
    /// <summary>Segments as a TCP sender emits them: the test super-packet cut by the segmenter.</summary>
    private static List<byte[]> Segments(bool v6, int payloadLength, int mss, byte flags = 0x18, int seed = 3)
    {
        var (packet, header, _) = TcpSegmenterTests.SuperPacket(v6, payloadLength, mss, flags, seed);
        Assert.True(TcpSegmenter.TryGetLayout(packet, header, out var layout));
        var list = new List<byte[]>();
        var buffer = new byte[layout.HeaderLength + mss];
        for (int i = 0; i < layout.Count; i++)
        {
            int n = TcpSegmenter.WriteSegment(packet, layout, i, buffer);
            list.Add(buffer.AsSpan(0, n).ToArray());
        }
        return list;
    }

    [Theory]
    [InlineData(false, 20_000, 1448)]
    [InlineData(true, 20_000, 1428)]
    [InlineData(false, 1448 * 3, 1448)]
    public void A_run_of_segments_becomes_one_super_packet_that_segments_back_into_the_same_bytes(bool v6, int payloadLength, int mss)
    {
        var segments = Segments(v6, payloadLength, mss);
        var gro = new TcpCoalescer();
        Assert.True(gro.TryStart(segments[0]));
        for (int i = 1; i < segments.Count; i++) Assert.True(gro.TryAppend(segments[i]), $"segment {i}");
        Assert.Equal(segments.Count, gro.Segments);
        var written = gro.Flush().ToArray();
        Assert.Equal(0, gro.Segments);

        var header = VirtioNetHeader.Read(written);
        Assert.Equal(v6 ? GsoType.TcpV6 : GsoType.TcpV4, header.Gso);
        Assert.True(header.NeedsChecksum);
        Assert.Equal(mss, header.GsoSize);
        var merged = written.AsSpan(VirtioNetHeader.Size).ToArray();
        // What the kernel does with it: complete the checksum, or cut it up again.
        var complete = merged.ToArray();
        Assert.True(TcpSegmenter.TryCompleteChecksum(complete, header.ChecksumStart, header.ChecksumOffset));
        Assert.True(TransportChecksum.Verify(complete));
        Assert.True(TcpSegmenter.TryGetLayout(merged, header, out var layout));
        Assert.Equal(segments.Count, layout.Count);
        var again = new byte[layout.HeaderLength + mss];
        for (int i = 0; i < layout.Count; i++)
        {
            int n = TcpSegmenter.WriteSegment(merged, layout, i, again);
            Assert.Equal(segments[i], again.AsSpan(0, n).ToArray());
        }
    }

    [Fact]
    public void A_single_segment_goes_out_unchanged_behind_a_zero_header()
    {
        var segment = Segments(false, 1000, 1448)[0];
        var gro = new TcpCoalescer();
        Assert.True(gro.TryStart(segment));
        var written = gro.Flush().ToArray();
        Assert.Equal(new byte[VirtioNetHeader.Size], written[..VirtioNetHeader.Size]);
        Assert.Equal(segment, written[VirtioNetHeader.Size..]);
        Assert.True(gro.Flush().IsEmpty);
    }

    [Fact]
    public void Segments_that_do_not_continue_the_run_are_refused()
    {
        var segments = Segments(false, 1448 * 4, 1448, flags: 0x10);
        var gro = new TcpCoalescer();

        // Out of order: a gap in the sequence.
        Assert.True(gro.TryStart(segments[0]));
        Assert.False(gro.TryAppend(segments[2]));
        Assert.True(gro.TryAppend(segments[1]));

        // Another flow (source port), another ack, another window, extra flags.
        foreach (var change in new Action<byte[]>[]
                 {
                     p => p[21] ^= 1,                 // source port (and thereby the checksum)
                     p => p[20 + 8] ^= 1,             // acknowledgment number
                     p => p[20 + 14] ^= 1,            // window
                     p => p[20 + 13] |= 0x01,         // FIN
                     p => p[20 + 13] |= 0x02,         // SYN
                     p => p[8] ^= 1,                  // TTL
                     p => p[20 + 22] ^= 1,            // option bytes
                 })
        {
            var altered = segments[2].ToArray();
            change(altered);
            Assert.False(gro.TryAppend(altered));
        }
        Assert.True(gro.TryAppend(segments[2]));
        Assert.Equal(3, gro.Segments);

        // Not TCP data at all: nothing is started.
        var udp = segments[0].ToArray();
        udp[9] = 17;
        Assert.False(gro.TryStart(udp));
        var headersOnly = segments[0].AsSpan(0, 52).ToArray();
        BinaryPrimitives.WriteUInt16BigEndian(headersOnly.AsSpan(2), 52);
        Assert.False(gro.TryStart(headersOnly));
    }

    [Fact]
    public void A_short_or_pushed_segment_ends_the_run()
    {
        var segments = Segments(false, 1448 * 2 + 100, 1448, flags: 0x18); // PSH on the last (short) one
        var gro = new TcpCoalescer();
        Assert.True(gro.TryStart(segments[0]));
        Assert.True(gro.TryAppend(segments[1]));
        Assert.True(gro.TryAppend(segments[2]));
        var more = Segments(false, 1448 * 4, 1448, flags: 0x10);
        Assert.False(gro.TryAppend(more[3])); // closed
        var merged = gro.Flush();
        Assert.Equal(0x18, merged[VirtioNetHeader.Size + 20 + 13]); // PSH kept

        // A segment shorter than the first in the middle also closes the run.
        var shortOne = Segments(false, 1448 + 700, 1448, flags: 0x10);
        Assert.True(gro.TryStart(shortOne[0]));
        Assert.True(gro.TryAppend(shortOne[1]));
        Assert.False(gro.TryAppend(more[2]));
    }

    [Fact]
    public void The_run_stops_before_the_IP_length_limit()
    {
        var segments = Segments(false, 1448 * 50, 1448, flags: 0x10);
        var gro = new TcpCoalescer();
        Assert.True(gro.TryStart(segments[0]));
        int merged = 1;
        while (merged < segments.Count && gro.TryAppend(segments[merged])) merged++;
        Assert.True(merged < segments.Count);
        Assert.True(52 + merged * 1448 <= TcpCoalescer.MaxPacket && 52 + (merged + 1) * 1448 > TcpCoalescer.MaxPacket);
    }

    [Fact]
    public void Coalescing_allocates_nothing()
    {
        var segments = Segments(false, 1448 * 40, 1448, flags: 0x10);
        var gro = new TcpCoalescer();
        void Run()
        {
            gro.TryStart(segments[0]);
            for (int i = 1; i < segments.Count; i++) gro.TryAppend(segments[i]);
            gro.Flush();
        }
        Run();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++) Run();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Damaged_and_random_packets_never_throw_and_whatever_merges_still_segments_cleanly()
    {
        // Inner packets come from peers: authenticated, but not trusted to be well formed.
        var random = new Random(20261128);
        var valid = Segments(false, 1448 * 8, 1448, flags: 0x10).Concat(Segments(true, 1428 * 8, 1428, flags: 0x10)).ToList();
        var gro = new TcpCoalescer();
        int merged = 0, cursor = 0;
        for (int round = 0; round < 20_000; round++)
        {
            byte[] packet;
            switch (random.Next(6))
            {
                case 0:
                    packet = new byte[random.Next(0, 200)];
                    random.NextBytes(packet);
                    break;
                case 1:
                    packet = valid[random.Next(valid.Count)].ToArray();
                    packet[random.Next(packet.Length)] = (byte)random.Next(256);
                    break;
                case 2:
                    packet = valid[random.Next(valid.Count)].AsSpan(0, random.Next(1, 100)).ToArray();
                    break;
                case 3:
                    packet = valid[random.Next(valid.Count)].ToArray();
                    break;
                default:
                    packet = valid[cursor++ % valid.Count].ToArray(); // runs in order
                    break;
            }
            if (!gro.TryAppend(packet))
            {
                var flushed = gro.Flush().ToArray();
                if (flushed.Length > 0 && flushed[1] != 0)
                {
                    merged++;
                    var header = VirtioNetHeader.Read(flushed);
                    var body = flushed.AsSpan(VirtioNetHeader.Size).ToArray();
                    Assert.True(TcpSegmenter.TryGetLayout(body, header, out var layout));
                    var segment = new byte[layout.HeaderLength + layout.Mss];
                    for (int i = 0; i < layout.Count; i++)
                    {
                        int n = TcpSegmenter.WriteSegment(body, layout, i, segment);
                        Assert.True(TransportChecksum.Verify(segment.AsSpan(0, n)), $"round {round}, segment {i}");
                    }
                }
                gro.TryStart(packet);
            }
        }
        Assert.True(merged > 100, $"only {merged} runs merged: the mix is not exercising the merge path");
    }
}
