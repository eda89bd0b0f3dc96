using System.Buffers;

namespace Gateway.Datapath.Devices;

/// <summary>
/// A TUN device in memory, like wireguard-go's tuntest: what a test <see cref="Inject"/>s is what
/// the node reads, and what the node writes waits in an outbox for <see cref="TryTake"/>. With
/// <c>vnetHeader</c> and <c>offloads</c> the frames carry a virtio_net_hdr both ways and the same
/// offload code as the kernel device's runs (segmentation on read, GRO on write), so offload paths
/// are tested without root. Frames are held in reused arrays: after warm-up
/// neither side allocates.
/// </summary>
public sealed class MemoryTunDevice : BatchTunDevice
{
    private readonly Queue<(byte[] Bytes, int Length)> _inbox = new(4096);
    private readonly Queue<(byte[] Bytes, int Length)> _outbox = new(4096);
    private readonly object _sync = new();
    private bool _closed;
    private readonly FramePool _frames = new();

    public MemoryTunDevice(string name = "mem0", bool vnetHeader = false, bool offloads = false, bool udpOffloads = false)
    {
        Name = name;
        HasVnetHeader = vnetHeader || offloads;
        if (offloads)
        {
            UseOffloads(udpOffloads);
        }
    }

    public override string Name { get; }

    public override bool HasVnetHeader { get; }

    public override bool IsKernelDevice => false;

    /// <summary>Frames written by the node and not yet taken.</summary>
    public int Pending
    {
        get { lock (_sync) return _outbox.Count; }
    }

    /// <summary>Queues a frame for the node to read (with the vnet header when the device has one).</summary>
    public void Inject(ReadOnlySpan<byte> frame)
    {
        var bytes = _frames.Rent(frame.Length);
        frame.CopyTo(bytes);
        lock (_sync)
        {
            _inbox.Enqueue((bytes, frame.Length));
            Monitor.PulseAll(_sync);
        }
    }

    /// <summary>Queues an IP packet for the node to read, with a zero vnet header if needed.</summary>
    public void InjectPacket(ReadOnlySpan<byte> packet)
    {
        if (!HasVnetHeader)
        {
            Inject(packet);
            return;
        }
        var frame = new byte[Offload.VirtioNetHeader.Size + packet.Length];
        packet.CopyTo(frame.AsSpan(Offload.VirtioNetHeader.Size));
        Inject(frame);
    }

    /// <summary>Takes the oldest frame the node wrote, waiting up to <paramref name="timeout"/>.</summary>
    public bool TryTake(out byte[] frame, TimeSpan timeout = default)
    {
        var deadline = DateTime.UtcNow + timeout;
        lock (_sync)
        {
            while (_outbox.Count == 0)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || _closed)
                {
                    frame = [];
                    return false;
                }
                Monitor.Wait(_sync, left);
            }
            var (bytes, length) = _outbox.Dequeue();
            frame = bytes.AsSpan(0, length).ToArray();
            _frames.Return(bytes);
            return true;
        }
    }

    /// <summary>Hands every written frame to <paramref name="take"/> without allocating; returns how many.</summary>
    public int Drain(ReadOnlySpanAction<byte, object?> take, object? state = null)
    {
        int n = 0;
        while (true)
        {
            (byte[] Bytes, int Length) item;
            lock (_sync)
            {
                if (!_outbox.TryDequeue(out item))
                {
                    return n;
                }
            }
            take(item.Bytes.AsSpan(0, item.Length), state);
            _frames.Return(item.Bytes);
            n++;
        }
    }

    public override int Read(Span<byte> buffer)
    {
        lock (_sync)
        {
            while (_inbox.Count == 0 && !_closed)
            {
                Monitor.Wait(_sync);
            }
            return _closed ? -1 : Take(buffer);
        }
    }

    public override int TryRead(Span<byte> buffer)
    {
        lock (_sync)
        {
            return _closed ? -1 : _inbox.Count == 0 ? 0 : Take(buffer);
        }
    }

    private int Take(Span<byte> buffer)
    {
        var (bytes, length) = _inbox.Dequeue();
        int n = Math.Min(length, buffer.Length); // a short buffer gets a truncated copy, as read(2) would
        bytes.AsSpan(0, n).CopyTo(buffer);
        _frames.Return(bytes);
        return n;
    }

    public override bool Write(ReadOnlySpan<byte> frame)
    {
        var bytes = _frames.Rent(frame.Length);
        frame.CopyTo(bytes);
        lock (_sync)
        {
            if (_closed)
            {
                _frames.Return(bytes);
                return false;
            }
            _outbox.Enqueue((bytes, frame.Length));
            Monitor.PulseAll(_sync);
        }
        return true;
    }

    public override void Dispose()
    {
        lock (_sync)
        {
            _closed = true;
            Monitor.PulseAll(_sync);
        }
    }
}
