using Gateway.Datapath.Offload;

namespace Gateway.Datapath.Devices;

/// <summary>
/// The batch and offload half of a TUN device, over a device's single-frame reads and writes:
/// with a vnet header and offloads on, TCP (TSO) and UDP (USO) super-packets read are cut into
/// packets and partial checksums completed; on write, runs of one TCP or UDP flow's packets are
/// merged into one super-packet (GRO), as wireguard-go's tun/offload_linux.go does. Shared by the
/// kernel device (<see cref="TunDevice"/>) and the in-memory one (<see cref="MemoryTunDevice"/>),
/// so the offload paths are the same code in tests as in production.
/// </summary>
public abstract class BatchTunDevice : IBatchTunDevice
{
    /// <inheritdoc/>
    public abstract string Name { get; }

    /// <summary>Every frame carries a 10-byte <c>virtio_net_hdr</c> in front of the packet.</summary>
    public abstract bool HasVnetHeader { get; }

    /// <inheritdoc/>
    public abstract bool IsKernelDevice { get; }

    /// <summary>True once TCP segmentation and checksum offload are on: reads may return TCP
    /// super-packets up to 64 KiB and packets with a partial checksum.</summary>
    public bool OffloadsEnabled { get; private set; }

    /// <summary>True once UDP segmentation offload is on as well (Linux 6.2+).</summary>
    public bool UdpOffloadsEnabled { get; private set; }

    /// <inheritdoc/>
    public TunCounters Counters { get; } = new();

    /// <summary>Reads one frame, waiting for it: its length, or -1 once closed.</summary>
    public abstract int Read(Span<byte> buffer);

    /// <summary>Reads one frame if one is queued: its length, 0 when none, -1 once closed.</summary>
    public abstract int TryRead(Span<byte> buffer);

    /// <summary>Writes one frame; false when it was refused or the device is closed.</summary>
    public abstract bool Write(ReadOnlySpan<byte> frame);

    public abstract void Dispose();

    /// <summary>Turns the software offloads on (the device's other side agreed to them).</summary>
    protected void UseOffloads(bool udp)
    {
        if (!HasVnetHeader)
        {
            throw new InvalidOperationException("Offloads need a device with a vnet header.");
        }
        OffloadsEnabled = true;
        UdpOffloadsEnabled = udp;
        _tcpGro = new TcpCoalescer();
        _udpGro = udp ? new UdpCoalescer() : null;
    }


    // A super-packet read from the kernel and not yet fully handed out.
    private byte[]? _scratch;
    private int _pendingLength;      // bytes of the super-packet after the vnet header; 0 = none
    private GsoType _pendingGso;
    private TcpSegmenter.Layout _pendingTcp;
    private UdpSegmenter.Layout _pendingUdp;
    private int _pendingNext;        // next segment to hand out
    private TcpCoalescer? _tcpGro;
    private UdpCoalescer? _udpGro;

    /// <inheritdoc/>
    public int Read(ReadOnlySpan<PacketBuffer> buffers)
    {
        if (buffers.IsEmpty)
        {
            return 0;
        }
        if (!HasVnetHeader)
        {
            int n = Read(buffers[0].WritableTail);
            if (n < 0)
            {
                return -1;
            }
            buffers[0].SetLength(n);
            int count = 1;
            while (count < buffers.Length)
            {
                n = TryRead(buffers[count].WritableTail);
                if (n <= 0)
                {
                    break;
                }
                buffers[count++].SetLength(n);
            }
            return count;
        }
        return ReadWithVnetHeader(buffers);
    }

    private int ReadWithVnetHeader(ReadOnlySpan<PacketBuffer> buffers)
    {
        var scratch = _scratch ??= GC.AllocateUninitializedArray<byte>(VirtioNetHeader.Size + 65536, pinned: true);
        int count = HandOutPending(buffers, 0);
        while (count < buffers.Length)
        {
            int n = count == 0 ? Read(scratch) : TryRead(scratch);
            if (n < 0)
            {
                return count > 0 ? count : -1;
            }
            if (n == 0)
            {
                break; // nothing more queued
            }
            if (n <= VirtioNetHeader.Size)
            {
                Counters.OffloadInvalid++;
                continue;
            }
            var header = VirtioNetHeader.Read(scratch);
            var packet = scratch.AsSpan(VirtioNetHeader.Size, n - VirtioNetHeader.Size);
            var target = buffers[count];
            if (header.Gso == GsoType.None)
            {
                if ((header.NeedsChecksum && !TcpSegmenter.TryCompleteChecksum(packet, header.ChecksumStart, header.ChecksumOffset)) ||
                    packet.Length > target.WritableTail.Length)
                {
                    Counters.OffloadInvalid++;
                    continue;
                }
                packet.CopyTo(target.WritableTail);
                target.SetLength(packet.Length);
                count++;
                continue;
            }
            int room = target.WritableTail.Length;
            if (header.Gso == GsoType.UdpL4)
            {
                if (!UdpSegmenter.TryGetLayout(packet, header, out _pendingUdp) || _pendingUdp.HeaderLength + _pendingUdp.SegmentSize > room)
                {
                    Counters.OffloadInvalid++;
                    continue;
                }
            }
            else if (!TcpSegmenter.TryGetLayout(packet, header, out _pendingTcp) || _pendingTcp.HeaderLength + _pendingTcp.Mss > room)
            {
                Counters.OffloadInvalid++;
                continue;
            }
            Counters.SuperPacketsRead++;
            _pendingGso = header.Gso;
            _pendingLength = packet.Length;
            _pendingNext = 0;
            count = HandOutPending(buffers, count);
        }
        return count;
    }

    /// <summary>Cuts the held super-packet's next segments into buffers[count..]; returns the new count.</summary>
    private int HandOutPending(ReadOnlySpan<PacketBuffer> buffers, int count)
    {
        if (_pendingLength == 0)
        {
            return count;
        }
        var packet = _scratch.AsSpan(VirtioNetHeader.Size, _pendingLength);
        bool udp = _pendingGso == GsoType.UdpL4;
        int segments = udp ? _pendingUdp.Count : _pendingTcp.Count;
        while (count < buffers.Length && _pendingNext < segments)
        {
            var target = buffers[count++];
            int length = udp
                ? UdpSegmenter.WriteSegment(packet, _pendingUdp, _pendingNext, target.WritableTail)
                : TcpSegmenter.WriteSegment(packet, _pendingTcp, _pendingNext, target.WritableTail);
            target.SetLength(length);
            _pendingNext++;
        }
        if (_pendingNext == segments)
        {
            _pendingLength = 0;
        }
        return count;
    }

    /// <inheritdoc/>
    public int Write(ReadOnlySpan<PacketBuffer> packets)
    {
        int failed = 0;
        if (!HasVnetHeader)
        {
            foreach (var packet in packets)
            {
                if (!Write(packet.Data))
                {
                    failed++;
                }
            }
            Counters.WriteFailures += failed;
            return failed;
        }
        var tcp = _tcpGro;
        var udp = _udpGro;
        foreach (var buffer in packets)
        {
            var packet = buffer.Data;
            if (tcp is not null)
            {
                // Runs of one flow's segments go to the kernel as one super-packet (GRO).
                if (tcp.TryAppend(packet) || (udp is not null && udp.TryAppend(packet)))
                {
                    continue;
                }
                failed += FlushRuns();
                if (tcp.TryStart(packet) || (udp is not null && udp.TryStart(packet)))
                {
                    continue;
                }
            }
            // A zero virtio_net_hdr (a plain, complete packet) in the headroom in front.
            if (!buffer.TryPrepend(VirtioNetHeader.Size, out var header))
            {
                failed++;
                continue;
            }
            header.Clear();
            if (!Write(buffer.Data))
            {
                failed++;
            }
        }
        failed += FlushRuns();
        Counters.WriteFailures += failed;
        return failed;
    }

    private int FlushRuns() =>
        (_tcpGro is null ? 0 : WriteRun(_tcpGro.Flush())) + (_udpGro is null ? 0 : WriteRun(_udpGro.Flush()));

    private int WriteRun(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return 0;
        }
        if (bytes[1] != (byte)GsoType.None)
        {
            Counters.SuperPacketsWritten++;
        }
        return Write(bytes) ? 0 : 1;
    }

}
