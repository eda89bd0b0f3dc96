using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>
/// The send path, TUN to network, in three steps: the reader thread reads a batch from the TUN
/// device (which has already cut any super-packet into packets) and runs the egress stage on
/// each packet in read order (routing, policy, session and counter); any crypto worker seals the
/// batch; the batches then leave through the bind in read order.
/// </summary>
internal sealed class SendPath
{
    /// <summary>A batch of packets read from TUN: sealed in place, then sent in one bind call.</summary>
    internal sealed class OutboundBatch
    {
        public readonly PacketBuffer[] Buffers;  // owned by the batch for the node's life
        public int Count;                        // packets read into the batch
        public readonly bool[] Sends;            // packet i became a datagram to send
        public readonly IpEndpoint[] Destinations;
        public readonly SealTicket[] Tickets;
        public int SendCount;
        public readonly PacketBuffer[] SendBuffers;
        public readonly IpEndpoint[] SendDestinations;

        public OutboundBatch(PacketBufferPool pool, int capacity)
        {
            Buffers = new PacketBuffer[capacity];
            for (int i = 0; i < capacity; i++)
            {
                if (!pool.TryRent(out Buffers[i]))
                {
                    throw new InvalidOperationException("The send pool is smaller than its batches.");
                }
            }
            Sends = new bool[capacity];
            Destinations = new IpEndpoint[capacity];
            Tickets = new SealTicket[capacity];
            SendBuffers = new PacketBuffer[capacity];
            SendDestinations = new IpEndpoint[capacity];
        }
    }

    private readonly IBatchTunDevice _tun;
    private readonly IUdpBind _bind;
    private readonly WireGuardEngine _engine;
    private readonly IEgressStage _egress;
    private readonly NodeMetrics _metrics;
    private readonly int _batchSize;
    private readonly int _bufferSize;
    private OrderedStage<OutboundBatch>? _stage;
    private long _allocated;

    /// <summary>Bytes the reader thread has allocated so far (read per batch, for the 0 B/packet tests).</summary>
    public long AllocatedBytes => Volatile.Read(ref _allocated);

    public SendPath(IBatchTunDevice tun, IUdpBind bind, WireGuardEngine engine, IEgressStage egress, NodeMetrics metrics, int batchSize, int mtu)
    {
        _tun = tun;
        _bind = bind;
        _engine = engine;
        _egress = egress;
        _metrics = metrics;
        _batchSize = batchSize;
        if (egress.Headroom > PacketBufferPool.DefaultHeadroom)
        {
            throw new ArgumentException("The egress stage needs more headroom than packet buffers have.", nameof(egress));
        }
        // Room for the headers in front, and padding plus tag behind, of an MTU-sized packet.
        _bufferSize = PacketBufferPool.DefaultHeadroom + mtu + 2 * Messages.TagSize;
    }

    /// <summary>Creates the ring of <paramref name="ring"/> batches on the crypto pool.</summary>
    public void Attach(CryptoPool pool, int ring)
    {
        var buffers = new PacketBufferPool(ring * _batchSize, _bufferSize);
        var batches = new OutboundBatch[ring];
        for (int i = 0; i < ring; i++)
        {
            batches[i] = new OutboundBatch(buffers, _batchSize);
        }
        _stage = pool.AddStage(batches, SealBatch, SendBatch);
    }

    /// <summary>The reader thread's loop; returns when the device closes or the pool stops.</summary>
    public void Run(CancellationToken stop)
    {
        var tun = _tun;
        var stage = _stage!;
        while (!stop.IsCancellationRequested)
        {
            var batch = stage.TryAcquire(wait: true);
            if (batch is null)
            {
                return;
            }
            var buffers = batch.Buffers;
            for (int i = 0; i < buffers.Length; i++)
            {
                buffers[i].Reset(PacketBufferPool.DefaultHeadroom);
            }
            int n = tun.Read(buffers);
            if (n < 0)
            {
                return;
            }
            long now = _engine.ReadClock(); // once per batch: conntrack and the engine's timers share it
            for (int i = 0; i < n; i++)
            {
                Begin(batch, i, now);
            }
            batch.Count = n;
            stage.Publish(batch);
            Volatile.Write(ref _allocated, GC.GetAllocatedBytesForCurrentThread());
        }
    }

    /// <summary>The in-order half for packet <paramref name="index"/>: the egress stage, which
    /// leaves the datagram to send (still to be sealed when the ticket is pending) as the buffer's data.</summary>
    private void Begin(OutboundBatch batch, int index, long now)
    {
        var buffer = batch.Buffers[index];
        batch.Sends[index] = false;
        if (buffer.Tailroom < 2 * Messages.TagSize)
        {
            // Longer than the MTU: no room for padding and tag (the kernel does not send such).
            Interlocked.Increment(ref _metrics.TunPacketTooLong);
            batch.Tickets[index] = default;
            return;
        }
        int slotStart = buffer.Headroom - _egress.Headroom;
        var result = _egress.Begin(buffer.Region[slotStart..], buffer.Length, now, out batch.Tickets[index]);
        if (result.Action == StageAction.Send)
        {
            buffer.SetData(slotStart + result.Offset, result.Length);
            batch.Sends[index] = true;
            batch.Destinations[index] = result.Endpoint;
        }
    }

    // Step 2 (any worker): the AEAD.
    private void SealBatch(OutboundBatch batch)
    {
        var engine = _engine;
        int sends = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            var buffer = batch.Buffers[i];
            ref var ticket = ref batch.Tickets[i];
            if (ticket.IsPending)
            {
                // The datagram starts at the data; the seal writes the padding and tag behind it.
                bool sealedOk = engine.CompleteEncapsulate(ticket, buffer.Region[buffer.Headroom..]);
                ticket = default; // let go of the session
                if (!sealedOk)
                {
                    continue;
                }
            }
            if (!batch.Sends[i])
            {
                continue;
            }
            batch.SendBuffers[sends] = buffer;
            batch.SendDestinations[sends] = batch.Destinations[i];
            sends++;
        }
        batch.SendCount = sends;
    }

    // Step 3 (in order): one bind call (sendmmsg, GSO).
    private void SendBatch(OutboundBatch batch)
    {
        if (batch.SendCount > 0)
        {
            _bind.Send(batch.SendBuffers.AsSpan(0, batch.SendCount), batch.SendDestinations.AsSpan(0, batch.SendCount));
        }
        _egress.EndBatch();
    }
}
